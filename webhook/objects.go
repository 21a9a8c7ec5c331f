package webhook

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/clonegate/clonegate/webhook/rules"
)

// The objects a review carries, trimmed to the fields the rules read: the
// decoder skips every other field (managedFields, status, a Pod's
// containers, …) without allocating, where decoding the whole object into
// its k8s.io/api type would copy each of its strings, maps and slices. What
// is decoded is then laid out as the k8s.io/api object the rules take,
// mostly in memory decoded along with it.
//
// A field decoded here that has the wrong JSON type is an error, as it is for
// the k8s.io/api types; a field not decoded is not looked at (the apiserver
// built the object from its own types and never sends one ill-typed).

// word is a string from the small set of values reviews are made of (kinds,
// versions, operations, volume modes, the snapshot group): the decoder hands
// it over without copying it. Any other value is copied, as for a string.
type word string

// UnmarshalText implements encoding.TextUnmarshaler, which the decoder calls
// with the unquoted string: null leaves a word empty, and any other JSON
// type is an error, as for a string.
func (w *word) UnmarshalText(b []byte) error {
	if known, ok := words[string(b)]; ok {
		*w = known
		return nil
	}
	*w = word(b)
	return nil
}

var words = func() map[string]word {
	m := map[string]word{}
	for _, s := range []string{
		"admission.k8s.io/v1", "AdmissionReview", "CREATE", "UPDATE", "DELETE", "CONNECT",
		"v1", "apps", "apps/v1", rules.KindClaim, "StatefulSet", "Pod",
		rules.KindSnapshot, rules.SnapshotAPIGroup,
		string(corev1.PersistentVolumeFilesystem), string(corev1.PersistentVolumeBlock),
	} {
		m[s] = word(s)
	}
	return m
}()

// objectHead is what every reviewed object is checked by: its kind, and the
// name and namespace of its metadata.
type objectHead struct {
	APIVersion word `json:"apiVersion"`
	Kind       word `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

func (h *objectHead) head() *objectHead { return h }

// claimObject is a PersistentVolumeClaim as the claim webhooks read it.
type claimObject struct {
	objectHead
	Spec claimSpec `json:"spec"`

	claim corev1.PersistentVolumeClaim // built from the above by object
}

// object returns the claim the rules judge; the mutating webhook changes it
// in place.
func (o *claimObject) object() *corev1.PersistentVolumeClaim {
	o.claim.Name, o.claim.Namespace = o.Metadata.Name, o.Metadata.Namespace
	o.Spec.build(&o.claim.Spec)
	return &o.claim
}

// claimSpec is the part of a claim's spec the rules read: its size, class,
// mode and data sources (every field of both: the dropped-source and
// cross-namespace rules read them all).
type claimSpec struct {
	Resources struct {
		Requests storageList `json:"requests"`
		Limits   storageList `json:"limits"`
	} `json:"resources"`
	StorageClassName *string         `json:"storageClassName"`
	VolumeMode       *word           `json:"volumeMode"`
	DataSource       *localObjectRef `json:"dataSource"`
	DataSourceRef    *typedObjectRef `json:"dataSourceRef"`
}

// storageList is a ResourceList of which only the storage size is read.
type storageList struct {
	Storage quantity `json:"storage"`
}

func (l *storageList) build() corev1.ResourceList {
	if !l.Storage.set {
		return nil
	}
	return corev1.ResourceList{corev1.ResourceStorage: l.Storage.value}
}

// quantity is a resource.Quantity that says whether it was given at all,
// decoded by Quantity's own UnmarshalJSON, as in a ResourceList.
type quantity struct {
	value resource.Quantity
	set   bool
}

func (q *quantity) UnmarshalJSON(b []byte) error {
	q.set = true
	return q.value.UnmarshalJSON(b)
}

type localObjectRef struct {
	APIGroup *word  `json:"apiGroup"`
	Kind     word   `json:"kind"`
	Name     string `json:"name"`

	ref corev1.TypedLocalObjectReference
}

type typedObjectRef struct {
	APIGroup  *word   `json:"apiGroup"`
	Kind      word    `json:"kind"`
	Name      string  `json:"name"`
	Namespace *string `json:"namespace"`

	ref corev1.TypedObjectReference
}

// build lays s out as a claim spec; the data sources are those decoded
// along with s.
func (s *claimSpec) build(out *corev1.PersistentVolumeClaimSpec) {
	out.Resources.Requests = s.Resources.Requests.build()
	out.Resources.Limits = s.Resources.Limits.build()
	out.StorageClassName = s.StorageClassName
	out.VolumeMode = (*corev1.PersistentVolumeMode)(s.VolumeMode)
	if ds := s.DataSource; ds != nil {
		ds.ref = corev1.TypedLocalObjectReference{APIGroup: (*string)(ds.APIGroup), Kind: string(ds.Kind), Name: ds.Name}
		out.DataSource = &ds.ref
	}
	if ref := s.DataSourceRef; ref != nil {
		ref.ref = corev1.TypedObjectReference{APIGroup: (*string)(ref.APIGroup), Kind: string(ref.Kind), Name: ref.Name, Namespace: ref.Namespace}
		out.DataSourceRef = &ref.ref
	}
}

// statefulSetObject is a StatefulSet as its webhook reads it: its claim
// templates and its pod template's volumes.
type statefulSetObject struct {
	objectHead
	Spec struct {
		VolumeClaimTemplates []claimTemplate `json:"volumeClaimTemplates"`
		Template             struct {
			Spec podSpec `json:"spec"`
		} `json:"template"`
	} `json:"spec"`

	sts appsv1.StatefulSet
}

type claimTemplate struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec claimSpec `json:"spec"`
}

// object returns the StatefulSet the rules judge, holding only what was decoded.
func (o *statefulSetObject) object() *appsv1.StatefulSet {
	o.sts.Name, o.sts.Namespace = o.Metadata.Name, o.Metadata.Namespace
	if n := len(o.Spec.VolumeClaimTemplates); n > 0 {
		o.sts.Spec.VolumeClaimTemplates = make([]corev1.PersistentVolumeClaim, n)
		for i := range o.Spec.VolumeClaimTemplates {
			t := &o.Spec.VolumeClaimTemplates[i]
			o.sts.Spec.VolumeClaimTemplates[i].Name = t.Metadata.Name
			t.Spec.build(&o.sts.Spec.VolumeClaimTemplates[i].Spec)
		}
	}
	o.Spec.Template.Spec.build(&o.sts.Spec.Template.Spec)
	return &o.sts
}

// podObject is a Pod as its webhook reads it: its volumes.
type podObject struct {
	objectHead
	Spec podSpec `json:"spec"`

	pod corev1.Pod
}

// object returns the Pod the rules judge, holding only what was decoded.
func (o *podObject) object() *corev1.Pod {
	o.pod.Name, o.pod.Namespace = o.Metadata.Name, o.Metadata.Namespace
	o.Spec.build(&o.pod.Spec)
	return &o.pod
}

// podSpec is the part of a pod spec the rules read: its volumes' names and
// generic ephemeral volumes.
type podSpec struct {
	Volumes []struct {
		Name      string `json:"name"`
		Ephemeral *struct {
			VolumeClaimTemplate *struct {
				Spec claimSpec `json:"spec"`

				template corev1.PersistentVolumeClaimTemplate
			} `json:"volumeClaimTemplate"`

			ephemeral corev1.EphemeralVolumeSource
		} `json:"ephemeral"`
	} `json:"volumes"`
}

func (s *podSpec) build(out *corev1.PodSpec) {
	if len(s.Volumes) == 0 {
		return
	}
	out.Volumes = make([]corev1.Volume, len(s.Volumes))
	for i := range s.Volumes {
		v, o := &s.Volumes[i], &out.Volumes[i]
		o.Name = v.Name
		if e := v.Ephemeral; e != nil {
			o.Ephemeral = &e.ephemeral
			if t := e.VolumeClaimTemplate; t != nil {
				t.Spec.build(&t.template.Spec)
				e.ephemeral.VolumeClaimTemplate = &t.template
			}
		}
	}
}
