package getorcreate_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// libraryPackages are what a user of the library compiles: the root, the
// dialects, pgxv5 and what they need.
var libraryPackages = []string{".", "./dialect/...", "./pgxv5"}

// allowedImports are the module paths a library package may import beside
// the standard library and the library itself: the three drivers.
var allowedImports = []string{
	"github.com/jackc/pgx/v5",
	"github.com/go-sql-driver/mysql",
	"modernc.org/sqlite",
}

// TestLibraryImportsOnlyDrivers: no package a library user compiles
// imports anything but the standard library, the library and the three
// drivers (the tools' dependencies live in cmd/'s own module).
func TestLibraryImportsOnlyDrivers(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	args := append([]string{"list", "-deps", "-json=ImportPath,Imports,Standard,Module"}, libraryPackages...)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	type pkg struct {
		ImportPath string
		Imports    []string
		Standard   bool
		Module     *struct{ Path string }
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	std := map[string]bool{}
	var ours []pkg
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Standard {
			std[p.ImportPath] = true
		}
		if p.Module != nil && p.Module.Path == "github.com/getorcreate/getorcreate" {
			ours = append(ours, p)
		}
	}
	if len(ours) < 6 {
		t.Fatalf("go list found only %d library packages", len(ours))
	}
	for _, p := range ours {
		for _, imp := range p.Imports {
			if std[imp] || strings.HasPrefix(imp, "github.com/getorcreate/getorcreate") || allowed(imp) {
				continue
			}
			t.Errorf("%s imports %s: the library may import only the standard library and the drivers %v", p.ImportPath, imp, allowedImports)
		}
		for _, imp := range p.Imports {
			if strings.Contains(imp, "/internal/testdb") || strings.Contains(imp, "/cmd/") {
				t.Errorf("%s imports %s", p.ImportPath, imp)
			}
		}
	}
}

func allowed(imp string) bool {
	for _, a := range allowedImports {
		if imp == a || strings.HasPrefix(imp, a+"/") {
			return true
		}
	}
	return false
}

// errorCodeRE matches what reading a driver's error codes looks like: the
// drivers' error types, SQLSTATE accessors, MySQL error numbers and SQLSTATE
// literals.
var errorCodeRE = regexp.MustCompile(`pgconn\.PgError|pq\.Error|SQLState|MySQLError|\.Number\b|sqlite\.Error|\.Code\(\)|"[0-9][0-9A-Z]{4}"`)

// exempt are the files that name a driver's error type without reading
// codes from it.
var exempt = map[string]bool{
	// A stand-in for GORM's SQLite driver that re-exports the real
	// driver's error type for GORM's own translation.
	"bench/internal/gosqliteshim/shim.go": true,
}

// TestErrorCodesReadOnlyInDialects: outside dialect/, no code of any
// module of the repository (tests aside, which check what the servers say)
// reads SQLSTATEs, MySQL error numbers or SQLite codes: every layer above
// the dialects speaks in the library's error kinds.
func TestErrorCodesReadOnlyInDialects(t *testing.T) {
	var bad []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == "dialect" || strings.HasPrefix(d.Name(), ".") && path != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || exempt[path] {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			code, _, _ := strings.Cut(line, "//")
			code = strings.ReplaceAll(code, "json.Number", "") // encoding/json's number type, not an error number
			if errorCodeRE.MatchString(code) {
				bad = append(bad, path+":"+strconv.Itoa(i+1)+": "+strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Errorf("reads a driver's error codes outside dialect/: %s", b)
	}
}
