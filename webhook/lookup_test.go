package webhook

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/clonegate/clonegate/webhook/rules"
)

// A StorageClass the cache has not seen yet (created in the same apply, or
// during a watch gap) is read live, not reported missing: a unit test, since
// through a real apiserver the cache wins that race almost always.
func TestClassReadLiveOnACacheMiss(t *testing.T) {
	s := runtime.NewScheme()
	if err := storagev1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	fresh := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fresh", Annotations: map[string]string{defaultClassAnnotation: "true"}}, Provisioner: "fast.csi.example.com"}
	l := &SourceLookup{Classes: toolscache.NewStore(toolscache.MetaNamespaceKeyFunc), Live: fake.NewClientBuilder().WithScheme(s).WithObjects(fresh).Build()}
	for what, name := range map[string]*string{"the named class": new("fresh"), "the default class": nil} {
		var facts rules.Facts
		got := l.class(context.Background(), name, &facts)
		if len(facts.Unread) > 0 || got == nil || got.Name != "fresh" {
			t.Errorf("%s = %v, %v; want the class read live", what, got, facts.Unread)
		}
	}
	var facts rules.Facts
	if got := l.class(context.Background(), new("nope"), &facts); len(facts.Unread) > 0 || got != nil {
		t.Errorf("a class that exists nowhere = %v, %v; want nil", got, facts.Unread)
	}
}

// A secondary object that is not served, forbidden or failing never fails
// the review: it is recorded as unread, and the rules that need it skip.
// Only the source itself fails closed.
func TestUnreadableSecondaryFacts(t *testing.T) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{storagev1.AddToScheme, corev1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	snap := &unstructured.Unstructured{}
	snap.SetGroupVersionKind(snapshotGVK)
	snap.SetNamespace("ns")
	snap.SetName("nightly")
	snap.Object["status"] = map[string]any{"readyToUse": true, "boundVolumeSnapshotContentName": "c"}
	restore := &corev1.PersistentVolumeClaimSpec{StorageClassName: new("fast"),
		DataSource: &corev1.TypedLocalObjectReference{APIGroup: new(rules.SnapshotAPIGroup), Kind: rules.KindSnapshot, Name: "nightly"}}
	failing := map[string]error{
		"not served": &meta.NoKindMatchError{GroupKind: snapshotContentGVK.GroupKind()},
		"forbidden":  apierrors.NewForbidden(schema.GroupResource{Group: rules.SnapshotAPIGroup, Resource: "volumesnapshotcontents"}, "c", errors.New("no")),
		"an error":   apierrors.NewInternalError(errors.New("etcd is sad")),
	}
	for name, contentErr := range failing {
		t.Run(name, func(t *testing.T) {
			live := fake.NewClientBuilder().WithScheme(s).WithObjects(snap.DeepCopy()).WithInterceptorFuncs(interceptor.Funcs{
				Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
					if u, ok := obj.(*unstructured.Unstructured); ok && u.GetKind() == snapshotContentGVK.Kind {
						return contentErr
					}
					if _, ok := obj.(*storagev1.StorageClass); ok {
						return apierrors.NewForbidden(schema.GroupResource{Group: "storage.k8s.io", Resource: "storageclasses"}, key.Name, errors.New("no"))
					}
					return c.Get(ctx, key, obj, opts...)
				},
			}).Build()
			l := &SourceLookup{Live: live}
			facts, err := l.Facts(context.Background(), "ns", restore)
			if err != nil {
				t.Fatalf("the review failed: %v", err)
			}
			if facts.Snapshot == nil || !facts.Snapshot.ReadyToUse {
				t.Fatalf("snapshot = %+v, want it read", facts.Snapshot)
			}
			var got []rules.Fact
			for _, u := range facts.Unread {
				got = append(got, u.Fact)
			}
			if want := []rules.Fact{rules.FactContent, rules.FactClass}; !slices.Equal(got, want) {
				t.Errorf("unread = %v, want %v", facts.Unread, want)
			}
			findings := rules.ValidateSource("ns", restore, facts)
			if len(findings) != 2 || findings[0].Rule != rules.RuleSkippedCheck || findings[1].Rule != rules.RuleSkippedCheck {
				t.Errorf("findings = %v, want two skipped-check warnings", findings)
			}
		})
	}
	// The source itself fails closed on an error the apiserver may not repeat.
	live := fake.NewClientBuilder().WithScheme(s).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return apierrors.NewInternalError(errors.New("etcd is sad"))
		},
	}).Build()
	if _, err := (&SourceLookup{Live: live}).Facts(context.Background(), "ns", restore); err == nil {
		t.Error("a snapshot that could not be read was judged; want the review to fail closed")
	}
}

// staleIndex answers claim lookups with what it held a moment ago.
type staleIndex map[string]*corev1.PersistentVolumeClaim

func (s staleIndex) Claim(namespace, name string) (*corev1.PersistentVolumeClaim, bool) {
	c, ok := s[namespace+"/"+name]
	return c, ok
}

// FreshFacts reads past the claim index and the caches: what a denial is
// confirmed with.
func TestFreshFactsReadPastTheCaches(t *testing.T) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{storagev1.AddToScheme, corev1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	source := func(size string, deleting bool) *corev1.PersistentVolumeClaim {
		c := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "src"},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: new("fast"), Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}}}}
		if deleting {
			c.DeletionTimestamp = &metav1.Time{}
			c.Finalizers = []string{"kubernetes.io/pvc-protection"}
		}
		return c
	}
	class := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Provisioner: "fast.csi.example.com"}
	// The index still holds the source being deleted; it has been recreated since.
	l := &SourceLookup{
		Claims: staleIndex{"ns/src": source("5Gi", true)},
		Live:   fake.NewClientBuilder().WithScheme(s).WithObjects(source("1Gi", false), class).Build(),
	}
	spec := &corev1.PersistentVolumeClaimSpec{StorageClassName: new("fast"),
		DataSource: &corev1.TypedLocalObjectReference{Kind: rules.KindClaim, Name: "src"}}
	cached, err := l.Facts(context.Background(), "ns", spec)
	if err != nil || cached.SourceClaim == nil || cached.SourceClaim.DeletionTimestamp == nil {
		t.Fatalf("Facts = %+v, %v; want the index's source, being deleted", cached.SourceClaim, err)
	}
	fresh, err := l.FreshFacts(context.Background(), "ns", spec)
	if err != nil || fresh.SourceClaim == nil || fresh.SourceClaim.DeletionTimestamp != nil || fresh.Class == nil {
		t.Fatalf("FreshFacts = %+v (class %v), %v; want the recreated source and its class, read live", fresh.SourceClaim, fresh.Class, err)
	}
}

// Volumes and classes the informers hold are read in place: no apiserver
// read, and no copy (the store's own object is what the rules see).
func TestVolumesAndClassesReadFromStores(t *testing.T) {
	volumes := toolscache.NewStore(toolscache.MetaNamespaceKeyFunc)
	classes := toolscache.NewStore(toolscache.MetaNamespaceKeyFunc)
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-1"}}
	older := metav1.NewTime(metav1.Now().Add(-time.Hour))
	fast := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fast", CreationTimestamp: older, Annotations: map[string]string{defaultClassAnnotation: "true"}}}
	newer := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "newer", CreationTimestamp: metav1.Now(), Annotations: map[string]string{betaDefaultClassAnnotation: "true"}}}
	plain := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "plain", CreationTimestamp: metav1.Now()}}
	for _, err := range []error{volumes.Add(pv), classes.Add(fast), classes.Add(newer), classes.Add(plain)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	reads := 0
	live := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			reads++
			return errors.New("read live")
		},
		List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
			reads++
			return errors.New("read live")
		},
	}).Build()
	l := &SourceLookup{Volumes: volumes, Classes: classes, Live: live}
	var facts rules.Facts
	if got := l.volume(context.Background(), "pv-1", &facts); got != pv {
		t.Errorf("volume = %v, want the stored object itself", got)
	}
	if got := l.class(context.Background(), new("fast"), &facts); got != fast {
		t.Errorf("named class = %v, want the stored object itself", got)
	}
	if got := l.class(context.Background(), nil, &facts); got != newer {
		t.Errorf("default class = %v, want the newest default (beta annotation counts)", got)
	}
	if reads != 0 || len(facts.Unread) != 0 {
		t.Errorf("%d live reads, unread %v; want none", reads, facts.Unread)
	}
	// A miss is read live, and its failure is an unread fact, not an error.
	if got := l.volume(context.Background(), "pv-2", &facts); got != nil || reads != 1 || len(facts.Unread) != 1 {
		t.Errorf("a missing volume = %v after %d reads, unread %v; want nil, one live read, one unread", got, reads, facts.Unread)
	}
}
