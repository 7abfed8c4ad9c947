package enroll

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/holdfast/holdfast/appliance/pki"
	"github.com/holdfast/holdfast/internal/atomicfile"
)

// ApplianceFile, in the state directory, says which appliance the agent
// enrolled with and how to reach it.
const ApplianceFile = "appliance.json"

// Appliance is the content of ApplianceFile.
type Appliance struct {
	// Address is the HOST:PORT of the appliance's agent listener.
	Address string `json:"address"`
	// HostName is the name in the appliance's certificate, the server
	// name to verify on every connection.
	HostName string `json:"host_name"`
	// CAFingerprint is the SHA-256 of the CA certificate enrolled with.
	CAFingerprint string    `json:"ca_fingerprint"`
	Enrolled      time.Time `json:"enrolled"`
}

func saveAppliance(dir string, a Appliance) error {
	data, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", ApplianceFile, err)
	}
	if err := atomicfile.Write(filepath.Join(dir, ApplianceFile), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save the appliance's address: %w", err)
	}
	return nil
}

// LoadAppliance reads ApplianceFile from an enrolled agent's state
// directory.
func LoadAppliance(dir string) (Appliance, error) {
	path := filepath.Join(dir, ApplianceFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return Appliance{}, fmt.Errorf("read %s (has this agent enrolled? run holdfast-agent enroll): %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var a Appliance
	if err := dec.Decode(&a); err != nil {
		return Appliance{}, fmt.Errorf("%s is damaged (enroll again with --force): %w", path, err)
	}
	if a.Address == "" {
		return Appliance{}, fmt.Errorf("%s names no appliance address (enroll again with --force)", path)
	}
	if _, err := pki.NormalizeHost(a.HostName); err != nil {
		return Appliance{}, fmt.Errorf("%s: appliance name: %w", path, err)
	}
	if _, err := pki.NormalizeFingerprint(a.CAFingerprint); err != nil {
		return Appliance{}, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}
