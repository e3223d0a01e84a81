package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/getorcreate/getorcreate/cmd/internal/tagd"
)

// TestHelpShowsNoToken: with TAGD_TOKEN set, --help prints no token, and
// no flag takes one.
func TestHelpShowsNoToken(t *testing.T) {
	const secret = "s3cret-in-the-environment"
	t.Setenv("TAGD_TOKEN", secret)
	var cfg tagd.Config
	var file string
	var lvl slog.Level
	var js bool
	fs := flags(&cfg, &file, &lvl, &js)
	var out bytes.Buffer
	fs.SetOutput(&out)
	if err := fs.Parse([]string{"--help"}); err == nil {
		t.Fatal("--help parsed as a normal run")
	}
	if out.Len() == 0 || !strings.Contains(out.String(), "-token-file") {
		t.Fatalf("no usage printed:\n%s", out.String())
	}
	if strings.Contains(out.String(), secret) {
		t.Fatalf("--help shows the token:\n%s", out.String())
	}
	if fs.Lookup("token") != nil {
		t.Fatal("a --token flag would put the token in the process list")
	}
	// Bad values are refused at start, with a message naming the setting.
	fs = flags(&cfg, &file, &lvl, &js)
	fs.SetOutput(&out)
	for _, args := range [][]string{{"--rate", "-5"}, {"--max-body", "-1"}, {"--db-timeout", "-1s"}, {"--rate-ipv6-prefix", "200"}} {
		cfg = tagd.Config{}
		if err := fs.Parse(args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if err := cfg.Validate(); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
