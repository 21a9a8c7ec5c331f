package webhook

import (
	"bytes"
	"context"
	"errors"
	"runtime/debug"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
)

// ClaimIndex is every PersistentVolumeClaim in the cluster, reduced to the
// few fields a clone's rules read about its source, and kept current by a
// list+watch. A cluster has many claims and clonegate reads one per review:
// an informer cache of full objects (even trimmed ones, a few hundred bytes
// of struct and two maps each) costs about 1.5 KB a claim; this costs under
// a tenth of that (a claim's name and 24 bytes), and a lookup is a map read
// with no deep copy.
type ClaimIndex struct {
	mu     sync.RWMutex
	byNS   map[string]map[string]claimFacts // namespace → name → facts
	staged map[string]map[string]claimFacts // a list in progress, for Replace
	synced atomic.Bool
	lastRV atomic.Pointer[string] // the newest resourceVersion seen

	// Shared values: namespaces, and the shapes of claims (class, sizes,
	// mode, phase), which repeat across claims. Each is counted by the
	// claims holding it and dropped with the last one, so that claims
	// created and deleted leave nothing behind. Only the reflector's
	// goroutine writes; poolMu guards them for tests.
	poolMu sync.Mutex
	strs   pool[string, string]
	shapes pool[shapeKey, *claimShape]
}

// pool holds values shared by claims, each with the number of claims
// holding it.
type pool[K comparable, V comparable] map[K]*pooled[V]

type pooled[V any] struct {
	v V
	n int
}

// get returns the value pooled under k, making it with mk when there is none,
// and counts one more holder.
func (p *pool[K, V]) get(k K, mk func() V) V {
	if *p == nil {
		*p = pool[K, V]{}
	}
	e := (*p)[k]
	if e == nil {
		e = &pooled[V]{v: mk()}
		(*p)[k] = e
	}
	e.n++
	return e.v
}

// put counts one holder of v (pooled under k) less; a value not from the
// pool is ignored.
func (p pool[K, V]) put(k K, v V) {
	if e := p[k]; e != nil && e.v == v {
		if e.n--; e.n == 0 {
			delete(p, k)
		}
	}
}

// claimFacts is what the rules read about a source claim: 24 bytes beside
// its name in the map. Most claims of a cluster share a handful of shapes
// (class, size, mode, phase), so each shape is stored once; only the
// volume name is the claim's own.
type claimFacts struct {
	volumeName string
	shape      *claimShape
}

// claimShape is the part of a claim's facts that claims share. Interned and
// shared: never modify it.
type claimShape struct {
	class    *string
	request  *resource.Quantity
	capacity *resource.Quantity
	deletion *metav1.Time // a claim being deleted has a shape of its own
	mode     *corev1.PersistentVolumeMode
	phase    corev1.PersistentVolumeClaimPhase
	claim    atomic.Pointer[corev1.PersistentVolumeClaim] // asClaim's
}

// shapeKey is a claimShape by value, to pool it.
type shapeKey struct {
	class, request, capacity, mode, phase string
	hasClass, hasMode                     bool
}

func (s *claimShape) key() shapeKey {
	k := shapeKey{phase: string(s.phase), request: quantityKey(s.request), capacity: quantityKey(s.capacity)}
	if s.class != nil {
		k.class, k.hasClass = *s.class, true
	}
	if s.mode != nil {
		k.mode, k.hasMode = string(*s.mode), true
	}
	return k
}

// quantityKey is "" for no quantity; a quantity's string is never empty.
func quantityKey(q *resource.Quantity) string {
	if q == nil {
		return ""
	}
	return q.String()
}

// sameQuantity reports whether a and b are the same value in the same
// format: two quantities may print alike and differ (the string rounds).
func sameQuantity(a, b *resource.Quantity) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Cmp(*b) == 0 && a.Format == b.Format
}

// NewClaimIndex returns an empty index; Run fills it.
func NewClaimIndex() *ClaimIndex { return &ClaimIndex{byNS: map[string]map[string]claimFacts{}} }

// Claim returns the named claim as the rules see it (name, namespace, and
// the fields they read), or false when the index does not hold it. The
// claim shares its sizes, class and mode with every claim of its shape:
// read it, never modify it.
func (x *ClaimIndex) Claim(namespace, name string) (*corev1.PersistentVolumeClaim, bool) {
	x.mu.RLock()
	f, ok := x.byNS[namespace][name]
	x.mu.RUnlock()
	if !ok {
		return nil, false
	}
	s := f.shape.asClaim()
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, DeletionTimestamp: s.DeletionTimestamp},
		Spec:       s.Spec,
		Status:     s.Status,
	}
	c.Spec.VolumeName = f.volumeName
	return c, true
}

// asClaim is the shape as the fields of a claim, built on the first lookup
// of a claim of this shape and shared by the later ones: a lookup then
// costs one allocation, not the two ResourceLists and copies of each field.
func (s *claimShape) asClaim() *corev1.PersistentVolumeClaim {
	if c := s.claim.Load(); c != nil {
		return c
	}
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: s.deletion},
		Spec:       corev1.PersistentVolumeClaimSpec{StorageClassName: s.class, VolumeMode: s.mode},
		Status:     corev1.PersistentVolumeClaimStatus{Phase: s.phase},
	}
	if s.request != nil {
		c.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: *s.request}
	}
	if s.capacity != nil {
		c.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: *s.capacity}
	}
	s.claim.Store(c) // two lookups racing here build the same claim
	return c
}

// Len is the number of claims held.
func (x *ClaimIndex) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := 0
	for _, m := range x.byNS {
		n += len(m)
	}
	return n
}

// HasSynced reports whether the initial list has been loaded.
func (x *ClaimIndex) HasSynced() bool { return x.synced.Load() }

// Run lists and watches claims through cfg until ctx ends. It is a
// controller-runtime Runnable's Start.
func (x *ClaimIndex) Run(ctx context.Context, cfg *rest.Config) error {
	rc, err := claimClient(cfg)
	if err != nil {
		return err
	}
	lw := &claimListWatch{x: x, ctx: ctx, rc: rc}
	r := toolscache.NewReflectorWithOptions(lw, &corev1.PersistentVolumeClaim{}, claimStore{x}, toolscache.ReflectorOptions{Name: "clonegate-claims"})
	r.RunWithContext(ctx)
	return nil
}

// claimClient is a REST client for core/v1 that lists and watches in
// protobuf: cheaper to decode than JSON at tens of thousands of claims.
func claimClient(cfg *rest.Config) (*rest.RESTClient, error) {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		return nil, err
	}
	metav1.AddToGroupVersion(s, corev1.SchemeGroupVersion)
	cfg = rest.CopyConfig(cfg)
	cfg.APIPath = "/api"
	cfg.GroupVersion = &corev1.SchemeGroupVersion
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(s).WithoutConversion()
	return rest.RESTClientFor(cfg)
}

func (x *ClaimIndex) intern(s string) string {
	if s == "" {
		return ""
	}
	return x.strs.get(s, func() string { return s })
}

var (
	filesystem = corev1.PersistentVolumeFilesystem
	block      = corev1.PersistentVolumeBlock
)

// facts reduces a claim to what the rules read. Call with poolMu held.
func (x *ClaimIndex) facts(c *listedClaim) claimFacts {
	s := &claimShape{
		class:    c.class,
		request:  c.request,
		capacity: c.capacity,
		deletion: c.deletion,
		phase:    c.phase,
	}
	switch m := c.mode; {
	case m == nil:
	case *m == filesystem:
		s.mode = &filesystem
	case *m == block:
		s.mode = &block
	default:
		s.mode = m
	}
	if s.deletion != nil {
		return claimFacts{c.volumeName, s} // rare, and never alike
	}
	k := s.key()
	if e := x.shapes[k]; e != nil && (!sameQuantity(e.v.request, s.request) || !sameQuantity(e.v.capacity, s.capacity)) {
		return claimFacts{c.volumeName, s} // printed alike, not the same: do not share
	}
	return claimFacts{c.volumeName, x.shapes.get(k, func() *claimShape { return s })}
}

// release gives back what facts took from the pool.
func (x *ClaimIndex) release(f claimFacts) {
	if f.shape.deletion == nil {
		x.shapes.put(f.shape.key(), f.shape)
	}
}

// releaseAll gives back what a whole index took from the pools.
func (x *ClaimIndex) releaseAll(byNS map[string]map[string]claimFacts) {
	for ns, m := range byNS {
		for _, f := range m {
			x.release(f)
		}
		x.strs.put(ns, ns)
	}
}

func (x *ClaimIndex) set(c *listedClaim) {
	x.poolMu.Lock()
	defer x.poolMu.Unlock()
	f := x.facts(c)
	x.mu.Lock()
	defer x.mu.Unlock()
	m := x.byNS[c.namespace]
	if m == nil {
		m = map[string]claimFacts{}
		x.byNS[x.intern(c.namespace)] = m
	}
	if old, ok := m[c.name]; ok {
		x.release(old)
	}
	m[c.name] = f
}

func (x *ClaimIndex) remove(namespace, name string) {
	x.poolMu.Lock()
	defer x.poolMu.Unlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	if m := x.byNS[namespace]; m != nil {
		if old, ok := m[name]; ok {
			x.release(old)
			delete(m, name)
		}
		if len(m) == 0 {
			delete(x.byNS, namespace)
			x.strs.put(namespace, namespace)
		}
	}
}

// add adds a claim to byNS, a list being staged. Call with poolMu held.
func (x *ClaimIndex) add(byNS map[string]map[string]claimFacts, c *listedClaim) {
	m := byNS[c.namespace]
	if m == nil {
		m = map[string]claimFacts{}
		byNS[x.intern(c.namespace)] = m
	}
	if old, ok := m[c.name]; ok {
		x.release(old)
	}
	m[c.name] = x.facts(c)
}

func ptrTo[T any](v T) *T { return &v }

// claimListWatch lists claims a page at a time, skimming each page for the
// fields kept (skimClaimList) as it arrives, and hands the reflector an empty list with the
// resourceVersion to watch from; Replace then swaps in what was staged. A
// reflector's own list (or watch-list stream) would hold every full claim
// in memory at once: hundreds of megabytes at 50k claims, which the Go
// runtime is slow to give back.
type claimListWatch struct {
	x   *ClaimIndex
	ctx context.Context
	rc  *rest.RESTClient
}

// IsWatchListSemanticsUnSupported keeps the reflector on List and Watch.
func (lw *claimListWatch) IsWatchListSemanticsUnSupported() bool { return true }

func (lw *claimListWatch) List(opts metav1.ListOptions) (runtime.Object, error) {
	lw.x.poolMu.Lock()
	defer lw.x.poolMu.Unlock()
	lw.x.mu.Lock()
	lw.x.releaseAll(lw.x.staged) // a list that failed half way
	lw.x.staged = nil
	lw.x.mu.Unlock()
	// The heap grows from nothing to the whole index: collecting at
	// clonegate's GOGC of 50 would run a GC every few pages. The list's
	// garbage is returned to the OS once it is done (see Replace).
	defer debug.SetGCPercent(debug.SetGCPercent(listGCPercent))
	byNS := map[string]map[string]claimFacts{}
	// A consistent read, paged, whatever the reflector asked for; the next
	// page is fetched while this one is indexed.
	opts.ResourceVersion, opts.ResourceVersionMatch, opts.Limit, opts.Continue = "", "", listPage, ""
	pages := make(chan pageOrError, 1)
	ctx, cancel := context.WithCancel(lw.ctx)
	defer cancel()
	go lw.fetch(ctx, opts, pages)
	var page *claimPage
	for p := range pages {
		if p.err != nil {
			lw.x.releaseAll(byNS)
			return nil, p.err
		}
		page = &p.page
		for i := range page.claims {
			lw.x.add(byNS, &page.claims[i])
		}
	}
	if page == nil {
		return nil, lw.ctx.Err()
	}
	lw.x.mu.Lock()
	lw.x.staged = byNS
	lw.x.mu.Unlock()
	return &corev1.PersistentVolumeClaimList{ListMeta: metav1.ListMeta{ResourceVersion: page.resourceVersion}}, nil
}

// listGCPercent is the GOGC of a list. It sets the peak RSS of a start: at
// 200k claims, about 80 MiB at 100 against 125 MiB at 400, for 0.2 s more
// CPU.
const listGCPercent = 100

// listPage is how many claims one page of the list carries. Each page costs
// the apiserver a share that grows with the claims left to list: at 200k
// claims, pages of 2,000 took 4.5 to 6 s, of 5,000 about 3 s, of 10,000
// under 2 s. A skimmed page holds only the raw body and the fields kept,
// so larger pages cost little memory.
const listPage = 10000

type pageOrError struct {
	page claimPage
	err  error
}

// fetch sends the pages of a list to pages, then closes it.
func (lw *claimListWatch) fetch(ctx context.Context, opts metav1.ListOptions, pages chan<- pageOrError) {
	defer close(pages)
	for {
		page, err := lw.page(ctx, opts)
		select {
		case pages <- pageOrError{page, err}:
		case <-ctx.Done():
			return
		}
		if err != nil || page.continue_ == "" {
			return
		}
		opts.Continue = page.continue_
	}
}

// page reads one page of claims: skimmed when it comes in protobuf, as the
// apiserver sends core objects; decoded whole otherwise.
func (lw *claimListWatch) page(ctx context.Context, opts metav1.ListOptions) (claimPage, error) {
	res := lw.rc.Get().Resource("persistentvolumeclaims").VersionedParams(&opts, metav1.ParameterCodec).Do(ctx)
	body, err := res.Raw()
	if err != nil {
		return claimPage{}, err
	}
	if bytes.HasPrefix(body, protobufPrefix) {
		return skimClaimList(body)
	}
	var l corev1.PersistentVolumeClaimList
	if err := res.Into(&l); err != nil {
		return claimPage{}, err
	}
	return pageOf(&l), nil
}

func (lw *claimListWatch) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return lw.rc.Get().Resource("persistentvolumeclaims").VersionedParams(&opts, metav1.ParameterCodec).Watch(lw.ctx)
}

// claimStore is the reflector's view of a ClaimIndex: a toolscache.Store
// that keeps only claimFacts.
type claimStore struct{ x *ClaimIndex }

var _ toolscache.Store = claimStore{}

var errNotClaim = errors.New("not a PersistentVolumeClaim")

func claimOf(obj any) (*corev1.PersistentVolumeClaim, error) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	c, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return nil, errNotClaim
	}
	return c, nil
}

func (s claimStore) Add(obj any) error {
	c, err := claimOf(obj)
	if err != nil {
		return err
	}
	l := listed(c)
	s.x.set(&l)
	s.Bookmark(c.ResourceVersion)
	return nil
}

func (s claimStore) Update(obj any) error { return s.Add(obj) }

func (s claimStore) Delete(obj any) error {
	c, err := claimOf(obj)
	if err != nil {
		return err
	}
	s.x.remove(c.Namespace, c.Name)
	s.Bookmark(c.ResourceVersion)
	return nil
}

// Replace swaps in a whole new list: the initial one, or after a watch
// could not resume.
func (s claimStore) Replace(items []any, rv string) error {
	s.x.poolMu.Lock()
	defer s.x.poolMu.Unlock()
	s.x.mu.Lock()
	byNS := s.x.staged
	s.x.staged = nil
	s.x.mu.Unlock()
	if byNS == nil {
		byNS = map[string]map[string]claimFacts{}
	}
	for _, obj := range items {
		c, err := claimOf(obj)
		if err != nil {
			return err
		}
		l := listed(c)
		s.x.add(byNS, &l)
	}
	s.x.mu.Lock()
	old := s.x.byNS
	s.x.byNS = byNS
	s.x.mu.Unlock()
	s.x.releaseAll(old)
	s.Bookmark(rv)
	s.x.synced.Store(true)
	if s.x.Len() >= bigList {
		// The list's pages are garbage now: return their memory to the OS
		// at once, not over minutes, so that RSS — what a memory limit sees
		// — is what the index holds.
		go debug.FreeOSMemory()
	}
	return nil
}

// bigList is the size of a list after which its garbage is returned to the
// OS at once.
const bigList = 10000

func (s claimStore) Resync() error { return nil }

func (s claimStore) Bookmark(rv string) {
	if rv != "" {
		s.x.lastRV.Store(&rv)
	}
}

func (s claimStore) LastStoreSyncResourceVersion() string {
	if rv := s.x.lastRV.Load(); rv != nil {
		return *rv
	}
	return ""
}

// The reflector writes to its store and never reads it back; the methods
// below answer from the index for completeness.

func (s claimStore) List() []any {
	var out []any
	for _, k := range s.ListKeys() {
		if obj, ok, _ := s.GetByKey(k); ok {
			out = append(out, obj)
		}
	}
	return out
}

func (s claimStore) ListKeys() []string {
	s.x.mu.RLock()
	defer s.x.mu.RUnlock()
	var keys []string
	for ns, m := range s.x.byNS {
		for name := range m {
			keys = append(keys, ns+"/"+name)
		}
	}
	return keys
}

func (s claimStore) Get(obj any) (any, bool, error) {
	key, err := toolscache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		return nil, false, err
	}
	return s.GetByKey(key)
}

func (s claimStore) GetByKey(key string) (any, bool, error) {
	ns, name, err := toolscache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil, false, err
	}
	c, ok := s.x.Claim(ns, name)
	if !ok {
		return nil, false, nil
	}
	return c, true, nil
}
