package webhook

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clonegate/clonegate/webhook/rules"
)

// gatedReader holds every read until release is closed, and records how
// many were held at once.
type gatedReader struct {
	client.Reader
	release          chan struct{}
	now, most, reads atomic.Int64
}

func (g *gatedReader) Get(ctx context.Context, _ client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
	g.reads.Add(1)
	n := g.now.Add(1)
	for {
		m := g.most.Load()
		if n <= m || g.most.CompareAndSwap(m, n) {
			break
		}
	}
	<-g.release
	g.now.Add(-1)
	return nil
}

func TestLimitedReaderBoundsReadsInFlightAndPerReview(t *testing.T) {
	g := &gatedReader{release: make(chan struct{})}
	l := NewLimitedReader(g, 4)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = l.Get(context.Background(), client.ObjectKey{Name: "x"}, &corev1.PersistentVolumeClaim{})
		}()
	}
	for g.now.Load() < 4 { // poll until the limit is reached
		time.Sleep(time.Millisecond)
	}
	close(g.release)
	wg.Wait()
	if most := g.most.Load(); most != 4 {
		t.Errorf("%d reads in flight at once, want at most (and up to) 4", most)
	}

	ctx := WithReadBudget(context.Background(), 3)
	var errs []error
	for range 5 {
		errs = append(errs, l.Get(ctx, client.ObjectKey{Name: "x"}, &corev1.PersistentVolumeClaim{}))
	}
	for i, err := range errs {
		if want := i >= 3; errors.Is(err, ErrReadBudget) != want {
			t.Errorf("read %d of a budget of 3: %v", i+1, err)
		}
	}
}

// blockedReader answers a read only when its context ends.
type blockedReader struct{ client.Reader }

func (blockedReader) Get(ctx context.Context, _ client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
	<-ctx.Done()
	return ctx.Err()
}

// A review out of time answers with what it judged and says what it did not:
// it neither fails nor runs past the apiserver's timeout. The time is the
// review's deadline, reached by a source read live through the LimitedReader,
// as in `clonegate serve`.
func TestTemplateJudgeAnswersWhenOutOfTime(t *testing.T) {
	j := &TemplateJudge{Policy: &rules.Policy{}, Facts: &SourceLookup{Live: NewLimitedReader(blockedReader{}, 4)}}
	spec := corev1.PersistentVolumeClaimSpec{DataSource: &corev1.TypedLocalObjectReference{Kind: rules.KindClaim, Name: "src"}}
	templates := []rules.Template{{Path: field.NewPath("spec", "volumes").Index(0), Spec: &spec}, {Path: field.NewPath("spec", "volumes").Index(1), Spec: &spec}}
	ctx := &reviewContext{Context: context.Background(), review: &review{}, deadline: time.Now().Add(50 * time.Millisecond)}
	warnings, err := j.judge(ctx, podResource, &metav1.ObjectMeta{Namespace: "apps"}, templates)
	if err != nil {
		t.Fatalf("error %v; want an answer", err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "spec.volumes[0] and the 1 claim templates after it were not judged: the review ran out of time") {
		t.Errorf("warnings %q", warnings)
	}
}

// A live read made for a review ends at the review's deadline, though the
// review itself makes no timer; a read for no review is left as it is.
func TestLiveReadsEndAtTheReviewDeadline(t *testing.T) {
	l := NewLimitedReader(blockedReader{}, 1)
	rc := &reviewContext{Context: context.Background(), review: &review{}, deadline: time.Now().Add(50 * time.Millisecond)}
	if _, ok := rc.Deadline(); ok {
		t.Fatal("the review's context has a deadline of its own: every review would pay for a timer")
	}
	err := l.Get(WithReadBudget(rc, 1), client.ObjectKey{Name: "src"}, &corev1.PersistentVolumeClaim{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read = %v, want the review's deadline", err)
	}
	plain, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Get(plain, client.ObjectKey{Name: "src"}, &corev1.PersistentVolumeClaim{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("read for no review = %v, want its own context's end", err)
	}
}
