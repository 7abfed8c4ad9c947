package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/holdfast/holdfast/internal/atomicfile"
)

// TokenFile is the administrator token's file name inside the data directory.
const TokenFile = "admin.token"

// loadOrCreateToken returns the administrator token, creating it on first
// start. The file must be private to its owner: a token others can read is
// no secret, so holdfastd refuses to start with one rather than guess whether
// it leaked.
func loadOrCreateToken(dataDir string) (token string, created bool, err error) {
	path := filepath.Join(dataDir, TokenFile)
	b, err := os.ReadFile(path)
	if err == nil {
		st, err := os.Stat(path)
		if err != nil {
			return "", false, fmt.Errorf("stat %s: %w", path, err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return "", false, fmt.Errorf("%s has mode %04o and may be readable by others: remove it to get a new token, or chmod 600 it", path, st.Mode().Perm())
		}
		t := strings.TrimSpace(string(b))
		if len(t) < 32 {
			return "", false, fmt.Errorf("%s holds no usable token (too short): remove it to get a new one", path)
		}
		return t, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("read %s: %w", path, err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", false, fmt.Errorf("generate token: %w", err)
	}
	token = hex.EncodeToString(raw)
	if err := atomicfile.Write(path, []byte(token+"\n"), 0o600); err != nil {
		return "", false, err
	}
	return token, true, nil
}
