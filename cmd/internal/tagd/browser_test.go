package tagd_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/getorcreate/getorcreate/cmd/internal/tagd"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// TestBrowser submits a tag through the web page in headless Chromium, on a
// phone-sized screen, and watches its count appear and rise, including a
// rise caused by another client (the page must update without a reload).
func TestBrowser(t *testing.T) {
	t.Parallel()
	chrome := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			chrome = p
			break
		}
	}
	if chrome == "" {
		t.Skip("browser test skipped: no chromium on PATH (.ci/tagd installs Debian's chromium)")
	}
	srv, _ := startServer(t, testdb.Open(t, "sqlite"), tagd.Options{})

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	count := func(want string) chromedp.Action[chromedp.Void] {
		// Poll the DOM until the tag's count reads want.
		return void(chromedp.Poll[bool](`(() => { const c = document.querySelector('li[data-key="hello browser"] .count'); return c !== null && c.textContent === "`+want+`"; })()`,
			chromedp.WithPollingTimeout(10*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return s
	}
	err := chromedp.Do(ctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)), // a phone
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#name")),
		chromedp.SendKeys(chromedp.CSS("#name"), "  Hello   Browser "),
		chromedp.Click(chromedp.CSS("#submit")),
		count("1"),
	)
	if err != nil {
		t.Fatalf("driving the page: %v", err)
	}
	if status, name := text("#status"), text(`li[data-key="hello browser"] .name`); !strings.Contains(status, "Created") || name != "Hello Browser" {
		t.Fatalf("after the first submission: status %q, name %q", status, name)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#name"), "HELLO BROWSER"),
		chromedp.Click(chromedp.CSS("#submit")),
		count("2"),
	); err != nil {
		t.Fatalf("second submission: %v", err)
	}
	// Another client submits: the open page must show it by itself.
	for range 2 {
		if a := postTag(t, srv.URL, "hello browser"); a.Status != 200 {
			t.Fatalf("%d %s", a.Status, a.Body)
		}
	}
	postTag(t, srv.URL, "Second tag")
	if err := chromedp.Do(ctx,
		count("4"),
		chromedp.WaitVisible(chromedp.CSS(`li[data-key="second tag"]`)),
	); err != nil {
		t.Fatalf("the page did not update by itself: %v", err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tagd-page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("TAGD_SCREENSHOT_DIR"); dir != "" {
		os.WriteFile(filepath.Join(dir, "tagd-page.png"), shot, 0o644)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(shot))
}

// void drops an action's result, so it can run in a chromedp.Do sequence.
func void[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := a(ctx, t)
		return err
	})
}
