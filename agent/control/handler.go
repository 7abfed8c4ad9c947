package control

import (
	"context"
	"encoding/json"
	"net/http"
)

// Appliance is what the appliance's side of the conversation answers from.
type Appliance interface {
	Assignments(host string) Assignments
	Report(ctx context.Context, host string, r Report)
}

// Handler serves AssignmentsPath and ReportPath. caller names the host
// behind a request from its verified certificate; requests it cannot name
// are refused. bad is told about every malformed report (for the activity
// log); it may be nil.
func Handler(app Appliance, caller func(*http.Request) (string, error), bad func(host string, err error)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+AssignmentsPath, func(w http.ResponseWriter, r *http.Request) {
		host, err := caller(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(app.Assignments(host))
	})
	mux.HandleFunc("POST "+ReportPath, func(w http.ResponseWriter, r *http.Request) {
		host, err := caller(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		rep, err := DecodeReport(r.Body)
		if err != nil {
			if bad != nil {
				bad(host, err)
			}
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		app.Report(r.Context(), host, rep)
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
