package webhook

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// What one review may cost. A workload review judges many templates, each of
// which may need live reads; without bounds one large Pod drives a thousand
// reads and runs past the apiserver's timeout, which skips the workload
// webhooks (failurePolicy Ignore) at the sender's will.
const (
	// MaxTemplatesPerReview is how many claim templates of one workload are
	// judged; the rest are named in a warning and judged as claims later.
	MaxTemplatesPerReview = 16
	// MaxLiveReadsPerReview bounds the apiserver reads of one review.
	MaxLiveReadsPerReview = 24
	// MaxLiveReadsInFlight bounds the apiserver reads of all reviews at once.
	MaxLiveReadsInFlight = 32
	// ReviewDeadline is a review's time for its lookups, from its start,
	// well inside the registrations' timeoutSeconds (5s), so that it answers
	// before the apiserver gives up on it: a workload review with what it
	// could judge, a claim review with a denial that says the lookup did not
	// finish. Each live read is bounded by it (withinReview): a review
	// answered from the caches makes no timer.
	ReviewDeadline = 3 * time.Second
)

// ErrReadBudget is returned by a LimitedReader when a review has used its
// live reads.
var ErrReadBudget = errors.New("the review used its live reads")

type budgetKey struct{}

// WithReadBudget gives the reads made with ctx through a LimitedReader a
// budget of n.
func WithReadBudget(ctx context.Context, n int64) context.Context {
	b := &budgetContext{Context: ctx}
	b.left.Store(n)
	return b
}

// budgetContext is a context with a read budget: one allocation, where
// context.WithValue and the counter would be two.
type budgetContext struct {
	context.Context
	left atomic.Int64
}

func (c *budgetContext) Value(key any) any {
	if key == (budgetKey{}) {
		return &c.left
	}
	return c.Context.Value(key)
}

type deadlineKey struct{}

// reviewDeadline is the deadline of the review ctx is judging, if it is
// one's (see ReviewDeadline): the review's context has none of its own.
func reviewDeadline(ctx context.Context) (time.Time, bool) {
	d, ok := ctx.Value(deadlineKey{}).(*time.Time)
	if !ok || d.IsZero() {
		return time.Time{}, false
	}
	return *d, true
}

// withinReview bounds a call to the apiserver by the deadline of the review
// ctx is judging; other contexts pass as they are.
func withinReview(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := reviewDeadline(ctx); ok {
		return context.WithDeadline(ctx, d)
	}
	return ctx, func() {}
}

// pastDeadline reports whether the review ctx is judging has passed its deadline.
func pastDeadline(ctx context.Context) bool {
	d, ok := reviewDeadline(ctx)
	return ok && !time.Now().Before(d)
}

// LimitedReader reads the apiserver on behalf of reviews, at most a fixed
// number at once and within each review's budget (see WithReadBudget).
type LimitedReader struct {
	client.Reader
	slots chan struct{}
}

// NewLimitedReader limits r to inFlight reads at once.
func NewLimitedReader(r client.Reader, inFlight int) *LimitedReader {
	return &LimitedReader{Reader: r, slots: make(chan struct{}, inFlight)}
}

// Get implements client.Reader.
func (l *LimitedReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	ctx, cancel := withinReview(ctx)
	defer cancel()
	if err := l.acquire(ctx); err != nil {
		return err
	}
	defer func() { <-l.slots }()
	return l.Reader.Get(ctx, key, obj, opts...)
}

// List implements client.Reader.
func (l *LimitedReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	ctx, cancel := withinReview(ctx)
	defer cancel()
	if err := l.acquire(ctx); err != nil {
		return err
	}
	defer func() { <-l.slots }()
	return l.Reader.List(ctx, list, opts...)
}

func (l *LimitedReader) acquire(ctx context.Context) error {
	if b, ok := ctx.Value(budgetKey{}).(*atomic.Int64); ok && b.Add(-1) < 0 {
		return ErrReadBudget
	}
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
