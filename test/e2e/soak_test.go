package e2e

import (
	"os"
	"testing"
	"time"

	"github.com/clonegate/clonegate/internal/testenv"
)

// TestSoak sends steady reviews for CLONEGATE_SOAK (make test-long sets it:
// SOAK, default 10m) and samples clonegate's RSS and goroutines: both must
// stay flat, and no review may fail. Skipped in make test.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("CLONEGATE_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("a long test: run it with make test-long (CLONEGATE_SOAK=10m)")
	}
	e := newEnv(t, testenv.Options{})
	ns := e.namespace(t)
	e.source(t, ns, "src", sourceOpts{request: "5Gi", capacity: "5Gi"})
	// Steady, not flat out: 2 workers, each a review every 20ms (~60-80/s with
	// the apiserver's own time), so the samples measure leaks, not load peaks.
	l := startLoad(t, e, ns, "src", 2, 20*time.Millisecond)
	// Warm up (caches, connection pools, GC target) before the first sample.
	warm := min(d/10, time.Minute)
	waitFor(t, "reviews to flow", func() bool { return l.total() > 0 })
	time.Sleep(warm) // a fixed-length phase of the run, not a wait for a condition
	startRSS, startG := rssBytes(t, e.Server), metric(t, e, "go_goroutines")
	started := time.Now()
	maxRSS, maxG := startRSS, startG
	tick := time.NewTicker(min(d/20, 30*time.Second))
	defer tick.Stop()
	for time.Since(started) < d {
		<-tick.C
		rss, g := rssBytes(t, e.Server), metric(t, e, "go_goroutines")
		maxRSS, maxG = max(maxRSS, rss), max(maxG, g)
		t.Logf("soak %v: RSS %.1f MiB, %v goroutines, %d reviews, %d failed", time.Since(started).Round(time.Second), float64(rss)/(1<<20), g, l.total(), l.failed.Load())
	}
	endRSS, endG := rssBytes(t, e.Server), metric(t, e, "go_goroutines")
	maxRSS, maxG = max(maxRSS, endRSS), max(maxG, endG)
	l.finish(t)
	t.Logf("FIGURES soak %v: %d reviews (%.0f/s), %d failed; RSS %.1f MiB -> %.1f MiB (max %.1f); goroutines %v -> %v (max %v)",
		d, l.total(), float64(l.total())/time.Since(started).Seconds(), l.failed.Load(),
		float64(startRSS)/(1<<20), float64(endRSS)/(1<<20), float64(maxRSS)/(1<<20), startG, endG, maxG)
	if endG > startG+10 {
		t.Errorf("goroutines grew from %v to %v", startG, endG)
	}
	if endRSS > startRSS+startRSS/4+8<<20 {
		t.Errorf("RSS grew from %.1f MiB to %.1f MiB", float64(startRSS)/(1<<20), float64(endRSS)/(1<<20))
	}
}
