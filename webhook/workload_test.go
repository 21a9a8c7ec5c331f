package webhook

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/clonegate/clonegate/webhook/rules"
)

// workloadFacts: a bound 5Gi source of driver fast, as the cluster knows it.
func workloadFacts() knownFacts {
	class := "fast"
	src := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "src", Namespace: "apps"}}
	src.Spec.StorageClassName = &class
	src.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}
	src.Status.Phase = corev1.ClaimBound
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv"}}
	pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: "fast.csi.example.com"}
	return knownFacts{Complete: true, SourceClaim: src, SourceVolume: pv,
		Class: &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Provisioner: "fast.csi.example.com"}}
}

func templateSpec(size string, ds *corev1.TypedLocalObjectReference) corev1.PersistentVolumeClaimSpec {
	class := "fast"
	return corev1.PersistentVolumeClaimSpec{
		StorageClassName: &class,
		DataSource:       ds,
		Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
	}
}

var cloneOfSrc = &corev1.TypedLocalObjectReference{Kind: rules.KindClaim, Name: "src"}

func statefulSet(specs ...corev1.PersistentVolumeClaimSpec) *appsv1.StatefulSet {
	sts := &appsv1.StatefulSet{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"}, ObjectMeta: metav1.ObjectMeta{Name: "db"}}
	for _, s := range specs {
		sts.Spec.VolumeClaimTemplates = append(sts.Spec.VolumeClaimTemplates, corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Spec: s})
	}
	return sts
}

func pod(specs ...corev1.PersistentVolumeClaimSpec) *corev1.Pod {
	p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "p"}}
	p.Spec.Volumes = []corev1.Volume{{Name: "config"}}
	for _, s := range specs {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{
			Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{Spec: s}}}})
	}
	return p
}

func TestWorkloadValidators(t *testing.T) {
	hooks := NewHandlers(Config{Policy: &rules.Policy{}, Facts: workloadFacts()})
	stsHook, podHook := hooks.StatefulSet, hooks.Pod

	cases := []struct {
		name     string
		hook     http.Handler
		obj      runtime.Object
		kind     metav1.GroupVersionKind
		op       admissionv1.Operation
		allowed  bool
		causes   []metav1.StatusCause
		message  string
		warnings []string
	}{{
		name: "admits a StatefulSet without templates", hook: stsHook, obj: statefulSet(), allowed: true,
	}, {
		name: "admits a StatefulSet cloning a large enough source", hook: stsHook, obj: statefulSet(templateSpec("5Gi", cloneOfSrc)), allowed: true,
	}, {
		name: "denies a StatefulSet whose template clone is too small, naming the template field",
		hook: stsHook, obj: statefulSet(templateSpec("5Gi", nil), templateSpec("1Gi", cloneOfSrc)),
		causes: []metav1.StatusCause{{Type: "FieldValueInvalid", Field: "spec.volumeClaimTemplates[1].spec.resources.requests.storage",
			Message: `Invalid value: "1Gi": must be at least 5Gi, the size of source PersistentVolumeClaim "src"; request 5Gi or more`}},
		message: `statefulsets.apps "db" is forbidden: spec.volumeClaimTemplates[1].spec.resources.requests.storage: Invalid value: "1Gi": must be at least 5Gi`,
	}, {
		name: "lets a StatefulSet update through, whatever its templates",
		hook: stsHook, obj: statefulSet(templateSpec("1Gi", cloneOfSrc)), op: admissionv1.Update, allowed: true,
	}, {
		name: "denies a Pod whose ephemeral clone is too small",
		hook: podHook, obj: pod(templateSpec("1Gi", cloneOfSrc)),
		causes: []metav1.StatusCause{{Type: "FieldValueInvalid", Field: "spec.volumes[1].ephemeral.volumeClaimTemplate.spec.resources.requests.storage",
			Message: `Invalid value: "1Gi": must be at least 5Gi, the size of source PersistentVolumeClaim "src"; request 5Gi or more`}},
		message: `pods "p" is forbidden: spec.volumes[1].ephemeral.volumeClaimTemplate.spec.resources.requests.storage`,
	}, {
		name: "admits a Pod without ephemeral volumes", hook: podHook, obj: pod(), allowed: true,
	}, {
		name: "admits a Pod cloning a large enough source", hook: podHook, obj: pod(templateSpec("5Gi", cloneOfSrc)), allowed: true,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			op := c.op
			if op == "" {
				op = admissionv1.Create
			}
			resp := send(t, c.hook, op, c.obj)
			if resp.Allowed != c.allowed {
				t.Fatalf("allowed = %v, want %v; result %+v", resp.Allowed, c.allowed, resp.Result)
			}
			if diff := cmp.Diff(c.warnings, resp.Warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			if c.allowed {
				return
			}
			if resp.Result.Code != 403 || resp.Result.Details == nil {
				t.Fatalf("result = %+v, want 403 Forbidden with details", resp.Result)
			}
			if diff := cmp.Diff(c.causes, resp.Result.Details.Causes); diff != "" {
				t.Errorf("causes (-want +got):\n%s", diff)
			}
			if len(resp.Result.Message) < len(c.message) || resp.Result.Message[:len(c.message)] != c.message {
				t.Errorf("message = %q, want it to start with %q", resp.Result.Message, c.message)
			}
		})
	}
}

func TestWorkloadValidatorsWarnAndSkipExemptNamespaces(t *testing.T) {
	pending := workloadFacts()
	pending.SourceClaim.Status.Phase = corev1.ClaimPending
	v := &PodValidator{TemplateJudge{Policy: &rules.Policy{}, Facts: pending}}
	p := pod(templateSpec("5Gi", cloneOfSrc))
	p.Namespace = "apps"
	warnings, err := v.ValidateCreate(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	want := admission.Warnings{`spec.volumes[1].ephemeral.volumeClaimTemplate.spec.dataSource.name: Invalid value: "src": source PersistentVolumeClaim "src" is Pending, not Bound; the clone stays Pending until the source is bound to a volume`}
	if diff := cmp.Diff(want, warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}

	exempt := &StatefulSetValidator{TemplateJudge{Policy: &rules.Policy{ExemptNamespaces: []string{"legacy"}}, Facts: workloadFacts()}}
	sts := statefulSet(templateSpec("1Gi", cloneOfSrc))
	sts.Namespace = "legacy"
	if warnings, err := exempt.ValidateCreate(context.Background(), sts); err != nil || warnings != nil {
		t.Errorf("exempt namespace: warnings %v, error %v; want neither", warnings, err)
	}
}

// A workload denied on cached facts is judged again on the apiserver's.
func TestWorkloadDenialsConfirmedLive(t *testing.T) {
	fresh := workloadFacts()
	cached := workloadFacts()
	cached.SourceClaim = deleting(cached.SourceClaim)
	sts := statefulSet(templateSpec("5Gi", cloneOfSrc))
	sts.Namespace = "apps"
	v := &StatefulSetValidator{TemplateJudge{Policy: &rules.Policy{}, Facts: staleFacts{cached: cached, fresh: fresh}}}
	if warnings, err := v.ValidateCreate(context.Background(), sts); err != nil || warnings != nil {
		t.Errorf("a source the cache holds as being deleted, recreated since: warnings %v, error %v; want it admitted", warnings, err)
	}
	v = &StatefulSetValidator{TemplateJudge{Policy: &rules.Policy{}, Facts: staleFacts{cached: cached, fresh: cached}}}
	if _, err := v.ValidateCreate(context.Background(), sts); err == nil || !strings.Contains(err.Error(), "is being deleted") {
		t.Errorf("a source being deleted, confirmed live: error %v; want the denial", err)
	}
}
