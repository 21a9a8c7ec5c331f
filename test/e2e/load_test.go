package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clonegate/clonegate/internal/testenv"
)

// load sends reviews through the apiserver: server-side dry-run creates of
// clones of a 5Gi source, alternately large enough (must be allowed) and too
// small (must be denied by validate.clonegate.dev). Anything else — a webhook
// call that failed, a wrong verdict — is a failed review.
type load struct {
	allowed, denied, failed atomic.Int64
	mu                      sync.Mutex
	failures                []string
	stop                    chan struct{}
	wg                      sync.WaitGroup
}

// startLoad runs workers that each send a review, then wait for pace (0: none).
func startLoad(t *testing.T, e *env, ns, src string, workers int, pace time.Duration) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				l.review(e, ns, src, fmt.Sprintf("clone-%d-%d", w, i), i%2 == 0)
				if pace > 0 {
					select {
					case <-l.stop:
						return
					case <-time.After(pace):
					}
				}
			}
		}()
	}
	return l
}

func (l *load) review(e *env, ns, src, name string, small bool) {
	size := "5Gi"
	if small {
		size = "1Gi"
	}
	class := "csi-fast"
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &class,
			DataSource:       &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: src},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := e.Client.Create(ctx, claim, client.DryRunAll)
	switch {
	case !small && err == nil:
		l.allowed.Add(1)
	case small && err != nil && strings.Contains(err.Error(), validateDenied) && strings.Contains(err.Error(), "must be at least 5Gi"):
		l.denied.Add(1)
	default:
		l.failed.Add(1)
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.failures) < 10 {
			l.failures = append(l.failures, fmt.Sprintf("%s (%s): %v", name, size, err))
		}
	}
}

// finish stops the workers, waits for their reviews in flight, and fails the
// test on any failed review.
func (l *load) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("reviews: %d allowed, %d denied, %d failed", l.allowed.Load(), l.denied.Load(), l.failed.Load())
	if n := l.failed.Load(); n > 0 {
		t.Errorf("%d failed reviews, first ones:\n%s", n, strings.Join(l.failures, "\n"))
	}
	if l.allowed.Load()+l.denied.Load() == 0 {
		t.Error("no review was answered")
	}
}

func (l *load) total() int64 { return l.allowed.Load() + l.denied.Load() + l.failed.Load() }

// rssBytes is the resident set size of the clonegate process.
func rssBytes(t *testing.T, s *testenv.Server) int64 {
	t.Helper()
	rss, err := s.RSS()
	if err != nil {
		t.Fatal(err)
	}
	return rss
}

// metric reads one unlabelled sample from clonegate's /metrics.
func metric(t *testing.T, s interface{ metricsURL() string }, name string) float64 {
	t.Helper()
	resp, err := http.Get(s.metricsURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

func (e *env) metricsURL() string { return "http://" + e.Server.MetricsAddr + "/metrics" }
