package webhook

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/clonegate/clonegate/webhook/rules"
)

// SourceInformers hold the restore and populator sources — VolumeSnapshots,
// VolumeSnapshotContents and VolumePopulators — trimmed to the fields the
// rules read, so that a restore costs a review no apiserver read, as a clone
// does. These APIs are CRDs a cluster may install at any time: each informer
// is started once discovery shows its API served, checked at start, every
// DiscoveryInterval, and at once when a live read finds the API served.
type SourceInformers struct {
	disco dynamicDiscovery
	dyn   dynamic.Interface
	kinds []*sourceKind
	kick  chan struct{}
	// discovered is set once discovery has been asked for every kind.
	discovered atomic.Bool
}

// DiscoveryInterval is how often SourceInformers look for APIs not served yet.
var DiscoveryInterval = 30 * time.Second

// dynamicDiscovery is the part of discovery SourceInformers ask.
type dynamicDiscovery interface {
	ServerResourcesForGroupVersion(groupVersion string) (*metav1.APIResourceList, error)
}

// sourceKind is one kind's informer, nil until its API is served.
type sourceKind struct {
	gvr      schema.GroupVersionResource
	kind     string
	keep     [][]string // the fields kept beside the name, namespace and deletion
	mu       sync.RWMutex
	informer toolscache.SharedIndexInformer
}

// The fields each kind is trimmed to: every field SourceLookup reads of it.
var (
	snapshotFields  = [][]string{{"status", "readyToUse"}, {"status", "restoreSize"}, {"status", "boundVolumeSnapshotContentName"}}
	contentFields   = [][]string{{"spec", "driver"}, {"spec", "sourceVolumeMode"}, {"metadata", "annotations", rules.AllowVolumeModeChangeAnnotation}}
	populatorFields = [][]string{{"sourceKind"}}
)

// NewSourceInformers returns informers for cfg's cluster; Run starts them.
func NewSourceInformers(cfg *rest.Config) (*SourceInformers, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return newSourceInformers(disco, dyn), nil
}

func newSourceInformers(disco dynamicDiscovery, dyn dynamic.Interface) *SourceInformers {
	return &SourceInformers{disco: disco, dyn: dyn, kick: make(chan struct{}, 1), kinds: []*sourceKind{
		{gvr: snapshotGVK.GroupVersion().WithResource("volumesnapshots"), kind: snapshotGVK.Kind, keep: snapshotFields},
		{gvr: snapshotContentGVK.GroupVersion().WithResource("volumesnapshotcontents"), kind: snapshotContentGVK.Kind, keep: contentFields},
		{gvr: populatorListGVK.GroupVersion().WithResource("volumepopulators"), kind: "VolumePopulator", keep: populatorFields},
	}}
}

// Run starts each kind's informer once its API is served, until ctx ends. It
// is a controller-runtime Runnable's Start.
func (s *SourceInformers) Run(ctx context.Context) error {
	tick := time.NewTicker(DiscoveryInterval)
	defer tick.Stop()
	for {
		s.discover(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-s.kick:
		}
	}
}

// discover starts the informers of kinds whose API is now served.
func (s *SourceInformers) discover(ctx context.Context) {
	served := map[string]map[string]bool{} // group/version → resources
	for _, k := range s.kinds {
		if k.started() {
			continue
		}
		gv := k.gvr.GroupVersion().String()
		if served[gv] == nil {
			served[gv] = map[string]bool{}
			if list, err := s.disco.ServerResourcesForGroupVersion(gv); err == nil {
				for _, r := range list.APIResources {
					served[gv][r.Name] = true
				}
			}
		}
		if served[gv][k.gvr.Resource] {
			k.start(ctx, s.dyn)
			log.FromContext(ctx).Info("watching a source kind, its API is served", "kind", k.kind)
		}
	}
	s.discovered.Store(true)
}

// Served tells Run that a live read found kind's API served: its informer
// starts now rather than at the next interval.
func (s *SourceInformers) Served(gvk schema.GroupVersionKind) {
	if s == nil {
		return
	}
	if k := s.of(gvk); k != nil && !k.started() {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// HasSynced reports whether discovery has run and every informer it started
// has synced: /readyz waits for it.
func (s *SourceInformers) HasSynced() bool {
	if !s.discovered.Load() {
		return false
	}
	for _, k := range s.kinds {
		if i := k.get(); i != nil && !i.HasSynced() {
			return false
		}
	}
	return true
}

// Get returns the cached object of gvk named by key (read-only: shared
// with the cache), and whether the cache could answer at all: false when
// its informer is not started or not synced, or holds no such object.
func (s *SourceInformers) Get(gvk schema.GroupVersionKind, key client.ObjectKey) (*unstructured.Unstructured, bool) {
	if s == nil {
		return nil, false
	}
	i := s.of(gvk).synced()
	if i == nil {
		return nil, false
	}
	k := key.Name
	if key.Namespace != "" {
		k = key.Namespace + "/" + key.Name
	}
	u := stored[*unstructured.Unstructured](i.GetStore(), k)
	return u, u != nil
}

// List returns every cached object of gvk (read-only), and false when its
// informer is not started or not synced.
func (s *SourceInformers) List(gvk schema.GroupVersionKind) ([]*unstructured.Unstructured, bool) {
	if s == nil {
		return nil, false
	}
	i := s.of(gvk).synced()
	if i == nil {
		return nil, false
	}
	return storedAll[*unstructured.Unstructured](i.GetStore()), true
}

func (s *SourceInformers) of(gvk schema.GroupVersionKind) *sourceKind {
	for _, k := range s.kinds {
		if k.gvr.Group == gvk.Group && k.gvr.Version == gvk.Version && (k.kind == gvk.Kind || k.kind+"List" == gvk.Kind) {
			return k
		}
	}
	return nil
}

func (k *sourceKind) get() toolscache.SharedIndexInformer {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.informer
}

func (k *sourceKind) started() bool { return k.get() != nil }

func (k *sourceKind) synced() toolscache.SharedIndexInformer {
	if k == nil {
		return nil
	}
	if i := k.get(); i != nil && i.HasSynced() {
		return i
	}
	return nil
}

func (k *sourceKind) start(ctx context.Context, dyn dynamic.Interface) {
	i := dynamicinformer.NewFilteredDynamicInformer(dyn, k.gvr, "", 0, toolscache.Indexers{}, nil).Informer()
	if err := i.SetTransform(k.trim); err != nil {
		log.FromContext(ctx).Error(err, "trimming cached sources", "kind", k.kind)
	}
	k.mu.Lock()
	k.informer = i
	k.mu.Unlock()
	go i.RunWithContext(ctx)
}

// trim keeps of an object only its name, namespace, resourceVersion,
// deletionTimestamp and the fields the rules read.
func (k *sourceKind) trim(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil // a DeletedFinalStateUnknown tombstone: leave it be
	}
	meta := map[string]any{"name": u.GetName()}
	if ns := u.GetNamespace(); ns != "" {
		meta["namespace"] = ns
	}
	if rv := u.GetResourceVersion(); rv != "" {
		meta["resourceVersion"] = rv
	}
	if d, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "metadata", "deletionTimestamp"); ok {
		meta["deletionTimestamp"] = d
	}
	out := map[string]any{"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(), "metadata": meta}
	for _, path := range k.keep {
		if v, ok, _ := unstructured.NestedFieldNoCopy(u.Object, path...); ok {
			_ = unstructured.SetNestedField(out, v, path...)
		}
	}
	return &unstructured.Unstructured{Object: out}, nil
}
