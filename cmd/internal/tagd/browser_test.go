package tagd_test

import (
	"context"
	"fmt"
	"net/http/httptest"
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

// TestBrowser drives the web page in headless Chromium, at phone and
// desktop sizes: submitting with the keyboard, counts rising by themselves
// when other clients submit, names isolated so none turns the text after it
// around, search by prefix and paging through every tag, a tag's chart,
// tagging an item, and the page saying so when it is rate limited or the
// server is gone. Screenshots go to the test's temp dir, and to
// TAGD_SCREENSHOT_DIR when set.
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
	db := testdb.Open(t, "sqlite")
	srv, _ := startServer(t, db, tagd.Options{})

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
	ctx, cancel = context.WithTimeout(ctx, 100*time.Second)
	defer cancel()

	shots := t.TempDir()
	shot := func(ctx context.Context, name string) {
		t.Helper()
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(shots, name), b, 0o644)
		if dir := os.Getenv("TAGD_SCREENSHOT_DIR"); dir != "" {
			os.WriteFile(filepath.Join(dir, name), b, 0o644)
		}
		t.Logf("screenshot %s (%d bytes)", filepath.Join(shots, name), len(b))
	}
	// until polls the page until the JavaScript expression is true.
	until := func(ctx context.Context, what, js string) {
		t.Helper()
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(10*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
		if err != nil {
			dump, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main").innerText`))
			t.Fatalf("%s: %v\npage:\n%s", what, err, dump)
		}
	}
	do := func(ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(ctx context.Context, js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return s
	}
	count := func(key, want string) string {
		return fmt.Sprintf(`(() => { const b = [...document.querySelectorAll("#tags button.tag")].find((b) => b.dataset.key === %q); return !!b && b.querySelector(".count").firstChild.textContent === %q; })()`, key, want)
	}

	// A phone. The form submits with Enter.
	do(ctx, "open the page",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)),
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#name")),
		chromedp.SendKeys(chromedp.CSS("#name"), "  Hello   Browser \r"))
	until(ctx, "the first submission shows count 1", count("hello browser", "1"))
	if st := eval(ctx, `document.getElementById("status").textContent`); !strings.Contains(st, "Created") {
		t.Fatalf("status after the first submission: %q", st)
	}
	do(ctx, "second spelling", chromedp.SendKeys(chromedp.CSS("#name"), "HELLO BROWSER\r"))
	until(ctx, "the second submission shows count 2", count("hello browser", "2"))
	// Other clients submit: the open page shows it by itself.
	for range 2 {
		postTag(t, srv.URL, "hello browser")
	}
	postTag(t, srv.URL, "Second tag")
	until(ctx, "other clients' submissions appear", count("hello browser", "4")+" && "+count("second tag", "1"))
	until(ctx, "the live state says when it updated", `document.getElementById("live-state").textContent === "Live" && /updated \d/.test(document.getElementById("live-time").textContent)`)

	// Names: a right-to-left one stays inside its isolate; a bidi override
	// is refused by the server, and the page says why.
	postTag(t, srv.URL, "שלום עולם")
	until(ctx, "the Hebrew tag appears", count("שלום עולם", "1"))
	if got := eval(ctx, `[...document.querySelectorAll("#tags .name")].filter((e) => e.tagName !== "BDI" || e.dir !== "auto").length + " of " + document.querySelectorAll("#tags .name").length`); !strings.HasPrefix(got, "0 of ") {
		t.Fatalf("names not isolated in <bdi dir=auto>: %s", got)
	}
	// (Set as the value: a keyboard cannot type U+202E.)
	do(ctx, "submit a bidi override", chromedp.Evaluate[chromedp.Void](`{ document.getElementById("name").value = "invoice\u202egpj.exe"; undefined }`),
		chromedp.SendKeys(chromedp.CSS("#name"), "\r"))
	until(ctx, "the refusal is shown", `document.getElementById("status").className.includes("error") && document.getElementById("status").textContent.includes("bidirectional")`)
	do(ctx, "clear the name", chromedp.Evaluate[chromedp.Void](`{ document.getElementById("name").value = ""; undefined }`))
	// The counter counts characters as the server does.
	do(ctx, "type 65 characters", chromedp.SendKeys(chromedp.CSS("#name"), strings.Repeat("é", 65)))
	until(ctx, "the counter warns", `document.getElementById("name-count").textContent === "65" && document.getElementById("name-help").classList.contains("over")`)
	do(ctx, "clear the name", chromedp.Evaluate[chromedp.Void](`{ document.getElementById("name").value = ""; document.getElementById("name").dispatchEvent(new Event("input")); undefined }`))

	// Search and paging: 25 tags under one prefix are 2 pages.
	for i := range 25 {
		postTag(t, srv.URL, fmt.Sprintf("page-%02d", i))
	}
	do(ctx, "search", chromedp.SendKeys(chromedp.CSS("#search"), "PAGE-"))
	until(ctx, "page 1 of the search", `document.querySelectorAll("#tags button.tag").length === 20 && [...document.querySelectorAll("#tags button.tag")].every((b) => b.dataset.key.startsWith("page-")) && !document.getElementById("next").disabled`)
	do(ctx, "next page", chromedp.Click(chromedp.CSS("#next")))
	until(ctx, "page 2 has the other 5", `document.querySelectorAll("#tags button.tag").length === 5 && document.getElementById("next").disabled && document.getElementById("page-info").textContent.startsWith("Page 2")`)
	seen := eval(ctx, `[...document.querySelectorAll("#tags button.tag")].map((b) => b.dataset.key).join(",")`)
	do(ctx, "previous page", chromedp.Click(chromedp.CSS("#prev")))
	until(ctx, "back on page 1", `document.querySelectorAll("#tags button.tag").length === 20 && document.getElementById("prev").disabled`)
	first := eval(ctx, `[...document.querySelectorAll("#tags button.tag")].map((b) => b.dataset.key).join(",")`)
	all := map[string]bool{}
	for _, k := range strings.Split(first+","+seen, ",") {
		all[k] = true
	}
	if len(all) != 25 {
		t.Fatalf("the two pages show %d distinct tags, want all 25: %s | %s", len(all), first, seen)
	}
	do(ctx, "clear the search", chromedp.Evaluate[chromedp.Void](`{ const s = document.getElementById("search"); s.value = ""; s.dispatchEvent(new Event("input")); undefined }`))
	until(ctx, "all tags again", count("hello browser", "4"))

	// A tag's chart: select it from the keyboard.
	do(ctx, "select a tag", chromedp.Focus(chromedp.CSS(`#tags button.tag[data-key="hello browser"]`)), chromedp.KeyEvent("\r"))
	until(ctx, "its chart", `!document.getElementById("detail").hidden && document.querySelectorAll("#chart svg rect.bar").length === 1 && document.querySelector("#chart svg").getAttribute("aria-label").includes("4 submissions")`)

	// Tag an item from the page.
	do(ctx, "tag an item",
		chromedp.SendKeys(chromedp.CSS("#item"), "post-1"),
		chromedp.SendKeys(chromedp.CSS("#item-tags"), "Hello Browser, databases, go"),
		chromedp.Click(chromedp.CSS("#item-tag")))
	until(ctx, "the item's tags", `document.querySelectorAll("#item-result li").length === 3 && document.getElementById("item-result").textContent.includes("3 tags added")`)
	until(ctx, "the item counted the tag", count("hello browser", "5"))
	shot(ctx, "tagd-phone.png")

	// A desktop, on the same data.
	do(ctx, "desktop", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(srv.URL+"/"))
	until(ctx, "the desktop page lists the tags", count("hello browser", "5"))
	do(ctx, "select a tag", chromedp.Click(chromedp.CSS(`#tags button.tag[data-key="page-03"]`)))
	until(ctx, "its chart", `document.querySelectorAll("#chart svg rect.bar").length === 1`)
	shot(ctx, "tagd-desktop.png")

	// Rate limited: another server whose limit the page's polling exceeds.
	limited, _ := startServer(t, db, tagd.Options{RateLimit: 0.2, RateBurst: 6})
	lctx, lcancel := chromedp.NewContext(ctx)
	defer lcancel()
	do(lctx, "open the rate-limited page", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)), chromedp.Navigate(limited.URL+"/"))
	until(lctx, "the page says it is rate limited", `document.getElementById("live-state").textContent === "Rate limited" && document.getElementById("tags").classList.contains("stale")`)
	shot(lctx, "tagd-rate-limited.png")

	// The server goes away: the page says it is reconnecting, and how old
	// its counts are.
	gone(srv)
	until(ctx, "the page says it is reconnecting", `document.getElementById("live-state").textContent === "Reconnecting…" && document.getElementById("live-time").textContent.includes("counts as of") && document.getElementById("tags").classList.contains("stale")`)
	shot(ctx, "tagd-reconnecting.png")
}

// gone stops a test server, its open connections included.
func gone(srv *httptest.Server) {
	srv.CloseClientConnections()
	srv.Close()
}
