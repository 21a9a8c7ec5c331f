package webhook

import (
	"fmt"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clonegate/clonegate/webhook/rules"
)

func TestClaimIndexHoldsWhatTheRulesRead(t *testing.T) {
	class, block := "fast", corev1.PersistentVolumeBlock
	now := metav1.Now()
	full := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "src", Namespace: "apps", UID: "u", ResourceVersion: "7",
			Labels: map[string]string{"a": "b"}, DeletionTimestamp: &now, Finalizers: []string{"kubernetes.io/pvc-protection"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi"), corev1.ResourceCPU: resource.MustParse("1")}},
			StorageClassName: &class,
			VolumeMode:       &block,
			VolumeName:       "pv-1",
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("8Gi")}},
	}
	want := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "src", Namespace: "apps", DeletionTimestamp: &now},
		Spec: corev1.PersistentVolumeClaimSpec{
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}},
			StorageClassName: &class,
			VolumeMode:       &block,
			VolumeName:       "pv-1",
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("8Gi")}},
	}
	x := NewClaimIndex()
	s := claimStore{x}
	if err := s.Replace([]any{full}, "7"); err != nil {
		t.Fatal(err)
	}
	if !x.HasSynced() || s.LastStoreSyncResourceVersion() != "7" {
		t.Fatalf("synced=%v rv=%q", x.HasSynced(), s.LastStoreSyncResourceVersion())
	}
	got, ok := x.Claim("apps", "src")
	if !ok || !equality.Semantic.DeepEqual(got, want) {
		t.Fatalf("Claim = %v, %v; want %v", got, ok, want)
	}
	// Lookups share the shape's fields (read-only), and the rules leave
	// them as they were.
	again, _ := x.Claim("apps", "src")
	if again == got || again.Spec.StorageClassName != got.Spec.StorageClassName {
		t.Errorf("two lookups: the same claim (%v), or fields not shared (%p, %p)", again == got, again.Spec.StorageClassName, got.Spec.StorageClassName)
	}
	clone := &corev1.PersistentVolumeClaimSpec{StorageClassName: &class, DataSource: &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "src"},
		Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}
	_ = rules.ValidateSource("apps", clone, rules.Facts{Complete: true, SourceClaim: got})
	if again, _ := x.Claim("apps", "src"); !equality.Semantic.DeepEqual(again, want) {
		t.Fatalf("the rules changed the index's claim: %v", again)
	}

	plain := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: "apps"}}
	if err := s.Add(plain); err != nil {
		t.Fatal(err)
	}
	if got, ok := x.Claim("apps", "plain"); !ok || !equality.Semantic.DeepEqual(got, &corev1.PersistentVolumeClaim{ObjectMeta: plain.ObjectMeta}) {
		t.Fatalf("Claim(plain) = %v, %v", got, ok)
	}
	if err := s.Delete(full); err != nil {
		t.Fatal(err)
	}
	if _, ok := x.Claim("apps", "src"); ok || x.Len() != 1 {
		t.Fatalf("after delete: found=%v len=%d", ok, x.Len())
	}
}

// Claims created and deleted leave nothing behind: every shape (class name,
// sizes, phase) and namespace the index shared goes with its last claim.
func TestClaimIndexForgetsWhatItNoLongerHolds(t *testing.T) {
	x := NewClaimIndex()
	s := claimStore{x}
	if err := s.Replace(nil, "1"); err != nil {
		t.Fatal(err)
	}
	claim := func(i int) *corev1.PersistentVolumeClaim {
		class := fmt.Sprintf("class-%d", i)
		return &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c-%d", i), Namespace: fmt.Sprintf("ns-%d", i)},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &class,
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(int64(i+1)<<20, resource.BinarySI)}}},
			Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.PersistentVolumeClaimPhase(fmt.Sprintf("phase-%d", i)),
				Capacity: corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(int64(i+2)<<20, resource.BinarySI)}},
		}
	}
	pooled := func() int { return len(x.strs) + len(x.shapes) }
	keep := claim(-1)
	if err := s.Add(keep); err != nil {
		t.Fatal(err)
	}
	held := pooled()
	for i := range 1000 {
		c := claim(i)
		if err := s.Add(c); err != nil {
			t.Fatal(err)
		}
		bigger := c.DeepCopy()
		bigger.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse(fmt.Sprintf("%dGi", i+1))
		if err := s.Update(bigger); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(bigger); err != nil {
			t.Fatal(err)
		}
	}
	if got := pooled(); got != held || x.Len() != 1 {
		t.Errorf("after 1000 create/update/delete cycles: %d values pooled, %d claims; want %d and 1", got, x.Len(), held)
	}
	// A relist replaces everything, and lets go of what it replaced.
	for i := range 100 {
		_ = s.Add(claim(i))
	}
	if err := s.Replace([]any{keep}, "2"); err != nil {
		t.Fatal(err)
	}
	if got := pooled(); got != held || x.Len() != 1 {
		t.Errorf("after a relist: %d values pooled, %d claims; want %d and 1", got, x.Len(), held)
	}
	if c, ok := x.Claim(keep.Namespace, keep.Name); !ok || *c.Spec.StorageClassName != "class--1" {
		t.Errorf("the claim kept is %v, %v", c, ok)
	}
}

// Claims alike (class, sizes, mode, phase) share one shape; a claim being
// deleted, or one whose size prints like another's but is not the same
// quantity, has its own.
func TestClaimIndexSharesShapes(t *testing.T) {
	x := NewClaimIndex()
	s := claimStore{x}
	if err := s.Replace(nil, "1"); err != nil {
		t.Fatal(err)
	}
	class := "fast"
	claim := func(name string, size resource.Quantity) *corev1.PersistentVolumeClaim {
		return &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps"},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &class,
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}}},
			Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
		}
	}
	for i := range 3 {
		if err := s.Add(claim(fmt.Sprint("a-", i), resource.MustParse("1k"))); err != nil {
			t.Fatal(err)
		}
	}
	deleting := claim("deleting", resource.MustParse("1k"))
	now := metav1.Now()
	deleting.DeletionTimestamp = &now
	// 1000 in BinarySI prints as "1k", as the others do, in another format.
	odd := claim("odd", *resource.NewQuantity(1000, resource.BinarySI))
	for _, c := range []*corev1.PersistentVolumeClaim{deleting, odd} {
		if err := s.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	m := x.byNS["apps"]
	if len(x.shapes) != 1 || m["a-0"].shape != m["a-1"].shape || m["a-0"].shape != m["a-2"].shape {
		t.Fatalf("%d shapes pooled; want the three claims alike to share one", len(x.shapes))
	}
	if m["deleting"].shape == m["a-0"].shape || m["odd"].shape == m["a-0"].shape {
		t.Fatal("a claim being deleted, or with another quantity, shares the common shape")
	}
	for name, want := range map[string]*corev1.PersistentVolumeClaim{"a-1": claim("a-1", resource.MustParse("1k")), "deleting": deleting, "odd": odd} {
		got, ok := x.Claim("apps", name)
		q := got.Spec.Resources.Requests[corev1.ResourceStorage]
		wantQ := want.Spec.Resources.Requests[corev1.ResourceStorage]
		if !ok || q.Format != wantQ.Format || q.Cmp(wantQ) != 0 || !equality.Semantic.DeepEqual(got.DeletionTimestamp, want.DeletionTimestamp) {
			t.Errorf("Claim(%s) = %v, %v; want %v", name, got, ok, want)
		}
	}
	for _, name := range []string{"a-0", "a-1", "a-2", "deleting", "odd"} {
		if err := s.Delete(&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps"}}); err != nil {
			t.Fatal(err)
		}
	}
	if len(x.shapes) != 0 || len(x.strs) != 0 {
		t.Errorf("after deleting every claim: %d shapes, %d strings pooled", len(x.shapes), len(x.strs))
	}
}

// Lookups of claims of one shape share its fields: reviews judging them at
// once must not race (run with -race), whatever the size's representation.
func TestClaimsOfOneShapeJudgedConcurrently(t *testing.T) {
	x := NewClaimIndex()
	s := claimStore{x}
	class := "fast"
	for i, size := range []string{"5Gi", "123456789012345678901234567890"} { // an int64, and an inf.Dec
		c := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("src%d", i), Namespace: "apps"},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &class, VolumeName: "pv",
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}}},
			Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}}}
		if err := s.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				name := fmt.Sprintf("src%d", (g+i)%2)
				src, ok := x.Claim("apps", name)
				if !ok {
					t.Errorf("%s not found", name)
					return
				}
				clone := &corev1.PersistentVolumeClaimSpec{StorageClassName: &class, DataSource: &corev1.TypedLocalObjectReference{Kind: rules.KindClaim, Name: name},
					Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}
				if f := rules.ValidateSource("apps", clone, rules.Facts{Complete: true, SourceClaim: src}); len(f) == 0 {
					t.Errorf("a 1Gi clone of %s was not refused", name)
				}
				_ = src.Status.Capacity.Storage().String()
			}
		})
	}
	wg.Wait()
}
