package webhook

import (
	"context"
	"testing"

	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
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
	l := &SourceLookup{Cache: fake.NewClientBuilder().WithScheme(s).Build(), Live: fake.NewClientBuilder().WithScheme(s).WithObjects(fresh).Build()}
	for what, name := range map[string]*string{"the named class": new("fresh"), "the default class": nil} {
		got, err := l.class(context.Background(), name)
		if err != nil || got == nil || got.Name != "fresh" {
			t.Errorf("%s = %v, %v; want the class read live", what, got, err)
		}
	}
	if got, err := l.class(context.Background(), new("nope")); err != nil || got != nil {
		t.Errorf("a class that exists nowhere = %v, %v; want nil", got, err)
	}
}
