package daemon

import (
	"log/slog"
	"net/http"

	"github.com/holdfast/holdfast/agent/control"
	"github.com/holdfast/holdfast/appliance/agenttasks"
	"github.com/holdfast/holdfast/appliance/api"
	"github.com/holdfast/holdfast/appliance/pki"
	"github.com/holdfast/holdfast/appliance/runner"
)

// newTaskHub makes the hub of agent data tasks (restores to agents,
// reads of agents' directories); only enrolled agents get tasks.
func newTaskHub(ca *pki.CA, logger *slog.Logger) *agenttasks.Hub {
	return agenttasks.New(agenttasks.Options{
		Known:  func(host string) bool { return enrolled(ca, host) },
		Logger: logger.With("component", "agenttasks"),
	})
}

// withTasks is what agents are assigned: the runner's roles and the
// hub's data tasks.
type withTasks struct {
	*runner.Runner
	hub *agenttasks.Hub
}

func (w withTasks) Assignments(host string) control.Assignments {
	a := w.Runner.Assignments(host)
	a.Tasks = w.hub.Tasks(host)
	return a
}

// taskRoutes serves the task streams and results on the agent listener.
func taskRoutes(l *api.AgentListener, hub *agenttasks.Hub) {
	h := hub.Handler(api.AgentHost)
	serve := func(w http.ResponseWriter, r *http.Request, _ string) { h.ServeHTTP(w, r) }
	l.HandleAgent("GET "+control.TaskStreamPattern, serve)
	l.HandleAgent("POST "+control.TaskStreamPattern, serve)
	l.HandleAgent("POST "+control.TaskResultPattern, serve)
}
