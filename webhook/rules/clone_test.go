package rules

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// claim is a spec requesting size (none when empty), in class fast.
func claim(size string, opts ...func(*corev1.PersistentVolumeClaimSpec)) corev1.PersistentVolumeClaimSpec {
	spec := corev1.PersistentVolumeClaimSpec{StorageClassName: ptr("fast")}
	if size != "" {
		spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}
	}
	for _, o := range opts {
		o(&spec)
	}
	return spec
}

func cloneOf(name string) func(*corev1.PersistentVolumeClaimSpec) {
	return func(s *corev1.PersistentVolumeClaimSpec) {
		s.DataSource = &corev1.TypedLocalObjectReference{Kind: KindClaim, Name: name}
	}
}

func restoreOf(name string) func(*corev1.PersistentVolumeClaimSpec) {
	return func(s *corev1.PersistentVolumeClaimSpec) {
		s.DataSource = &corev1.TypedLocalObjectReference{APIGroup: ptr(SnapshotAPIGroup), Kind: KindSnapshot, Name: name}
	}
}

func block(s *corev1.PersistentVolumeClaimSpec) { s.VolumeMode = ptr(corev1.PersistentVolumeBlock) }

// bound is a source claim of request, bound with capacity (Pending when empty).
func bound(request, capacity string, opts ...func(*corev1.PersistentVolumeClaim)) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "src", Namespace: "ns"},
		Spec:       claim(request),
	}
	if capacity != "" {
		c.Spec.VolumeName = "pv-src"
		c.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(capacity)}}
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func csiVolume(driver string) *corev1.PersistentVolume {
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-src"}}
	pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: driver}
	return pv
}

var fast = &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Provisioner: "fast.csi.example.com"}

// cluster is what the webhook knows: a bound 5Gi source of driver fast.
func cluster(src *corev1.PersistentVolumeClaim) Facts {
	return Facts{Complete: true, SourceClaim: src, SourceVolume: csiVolume("fast.csi.example.com"), Class: fast, SnapshotsServed: true}
}

var (
	sourceName = field.NewPath("spec", "dataSource", "name")
	storage    = field.NewPath("spec", "resources", "requests", "storage")
	classPath  = field.NewPath("spec", "storageClassName")
)

func TestValidateSource(t *testing.T) {
	ready := &Snapshot{ReadyToUse: true, RestoreSize: ptr(resource.MustParse("5Gi")), Driver: "fast.csi.example.com"}
	cases := []struct {
		name  string
		spec  corev1.PersistentVolumeClaimSpec
		facts Facts
		want  []Finding
	}{{
		name:  "says nothing of a claim without a source",
		spec:  claim("1Gi"),
		facts: Facts{Complete: true},
	}, {
		name:  "admits a clone as large as its source",
		spec:  claim("5Gi", cloneOf("src")),
		facts: cluster(bound("5Gi", "5Gi")),
	}, {
		name:  "admits a clone of the same size in other units",
		spec:  claim("5120Mi", cloneOf("src")),
		facts: cluster(bound("5Gi", "5Gi")),
	}, {
		name:  "rejects a clone smaller than its source",
		spec:  claim("1Gi", cloneOf("src")),
		facts: cluster(bound("5Gi", "5Gi")),
		want: []Finding{{RuleCloneSize, field.Invalid(storage, "1Gi",
			`must be at least 5Gi, the size of source PersistentVolumeClaim "src"; request 5Gi or more`)}},
	}, {
		name:  "rejects a clone one byte short",
		spec:  claim("5368709119", cloneOf("src")),
		facts: cluster(bound("5Gi", "5Gi")),
		want: []Finding{{RuleCloneSize, field.Invalid(storage, "5368709119",
			`must be at least 5Gi, the size of source PersistentVolumeClaim "src"; request 5Gi or more`)}},
	}, {
		name:  "rejects a clone smaller than an expanded source, as the driver would",
		spec:  claim("5Gi", cloneOf("src")),
		facts: cluster(bound("5Gi", "8Gi")),
		want: []Finding{{RuleCloneCapacity, field.Invalid(storage, "5Gi",
			`must be at least 8Gi, the capacity of source PersistentVolumeClaim "src" (it requested 5Gi; its volume is larger, rounded up or expanded); request 8Gi or more; the provisioner passes it on, but a CSI driver that does not round the clone up as it rounded the source refuses it and the claim stays Pending (set rule clone-capacity to deny where your driver does)`)}},
	}, {
		name:  "rejects a clone of a source the driver rounded up under clone-capacity, not clone-size",
		spec:  claim("1500Mi", cloneOf("src")),
		facts: cluster(bound("1500Mi", "2Gi")),
		want: []Finding{{RuleCloneCapacity, field.Invalid(storage, "1500Mi",
			`must be at least 2Gi, the capacity of source PersistentVolumeClaim "src" (it requested 1500Mi; its volume is larger, rounded up or expanded); request 2Gi or more; the provisioner passes it on, but a CSI driver that does not round the clone up as it rounded the source refuses it and the claim stays Pending (set rule clone-capacity to deny where your driver does)`)}},
	}, {
		name:  "admits a clone one milli-byte short, which the provisioner rounds up to the same bytes",
		spec:  claim("1073741823500m", cloneOf("src")),
		facts: cluster(bound("1Gi", "1Gi")),
	}, {
		name:  "rejects a clone one byte short",
		spec:  claim("1073741823", cloneOf("src")),
		facts: cluster(bound("1Gi", "1Gi")),
		want: []Finding{{RuleCloneSize, field.Invalid(storage, "1073741823",
			`must be at least 1Gi, the size of source PersistentVolumeClaim "src"; request 1Gi or more`)}},
	}, {
		name:  "rejects a clone smaller than the source's request when its volume is smaller",
		spec:  claim("9G", cloneOf("src")),
		facts: cluster(bound("10G", "5Gi")),
		want: []Finding{{RuleCloneSize, field.Invalid(storage, "9G",
			`must be at least 10G, the size of source PersistentVolumeClaim "src"; request 10G or more`)}},
	}, {
		name:  "rejects a clone that requests no storage",
		spec:  claim("", cloneOf("src")),
		facts: cluster(bound("5Gi", "5Gi")),
		want: []Finding{{RuleCloneSize, field.Invalid(storage, "",
			`a claim filled from a source must request storage: request 5Gi or more (the size of source PersistentVolumeClaim "src")`)}},
	}, {
		name:  "reports a missing source when the cluster was asked",
		spec:  claim("1Gi", cloneOf("src")),
		facts: Facts{Complete: true, Class: fast},
		want: []Finding{{RuleMissingSource, field.Invalid(sourceName, "src",
			`PersistentVolumeClaim "src" does not exist in namespace "ns"; the claim stays Pending until it does: create the source first or fix the name`)}},
	}, {
		name:  "says nothing of a source it could not see (offline)",
		spec:  claim("1Gi", cloneOf("src")),
		facts: Facts{},
	}, {
		name:  "warns of a Pending source, and still checks its size",
		spec:  claim("1Gi", cloneOf("src")),
		facts: Facts{Complete: true, SourceClaim: bound("5Gi", ""), Class: fast},
		want: []Finding{
			{RuleSourceNotBound, field.Invalid(sourceName, "src", `source PersistentVolumeClaim "src" is Pending, not Bound; the clone stays Pending until the source is bound to a volume`)},
			{RuleCloneSize, field.Invalid(storage, "1Gi", `must be at least 5Gi, the size of source PersistentVolumeClaim "src"; request 5Gi or more`)},
		},
	}, {
		name: "names a Lost source's phase",
		spec: claim("5Gi", cloneOf("src")),
		facts: cluster(bound("5Gi", "5Gi", func(c *corev1.PersistentVolumeClaim) {
			c.Status.Phase = corev1.ClaimLost
		})),
		want: []Finding{{RuleSourceNotBound, field.Invalid(sourceName, "src", `source PersistentVolumeClaim "src" is Lost, not Bound; the clone stays Pending until the source is bound to a volume`)}},
	}, {
		name: "rejects a source being deleted",
		spec: claim("5Gi", cloneOf("src")),
		facts: cluster(bound("5Gi", "5Gi", func(c *corev1.PersistentVolumeClaim) {
			c.DeletionTimestamp = &metav1.Time{}
		})),
		want: []Finding{{RuleSourceDeleting, field.Invalid(sourceName, "src", `source PersistentVolumeClaim "src" is being deleted and cannot be cloned; clone another claim or restore from a snapshot`)}},
	}, {
		name: "rejects a source without storage class",
		spec: claim("5Gi", cloneOf("src")),
		facts: cluster(bound("5Gi", "5Gi", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.StorageClassName = nil
		})),
		want: []Finding{{RuleStorageClass, field.Invalid(sourceName, "src", `source PersistentVolumeClaim "src" has no storageClassName, and the provisioner refuses to clone such a claim; clone a claim provisioned from a StorageClass`)}},
	}, {
		name: "admits a source with storageClassName \"\" bound to a volume of the right driver, as the provisioner does",
		spec: claim("5Gi", cloneOf("src")),
		facts: cluster(bound("5Gi", "5Gi", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.StorageClassName = ptr("")
		})),
	}, {
		name:  "rejects a clone with storageClassName \"\", which is never provisioned",
		spec:  claim("5Gi", cloneOf("src"), func(s *corev1.PersistentVolumeClaimSpec) { s.StorageClassName = ptr("") }),
		facts: Facts{Complete: true, SourceClaim: bound("5Gi", "5Gi"), SourceVolume: csiVolume("fast.csi.example.com")},
		want: []Finding{{RuleStorageClass, field.Invalid(classPath, "",
			`a claim with storageClassName "" is never provisioned: it is bound to an existing PersistentVolume and its data source is ignored; set spec.storageClassName to the source's class ("fast")`)}},
	}, {
		name:  "warns of a clone whose class does not exist yet: it is provisioned once it does",
		spec:  claim("5Gi", cloneOf("src")),
		facts: Facts{Complete: true, SourceClaim: bound("5Gi", "5Gi"), SourceVolume: csiVolume("fast.csi.example.com")},
		want: []Finding{{RuleMissingClass, field.Invalid(classPath, "fast",
			`StorageClass "fast" does not exist, so the claim stays Pending until it does; create it first, or set spec.storageClassName to the source's class ("fast")`)}},
	}, {
		name: "warns of a clone without class when the cluster has no default",
		spec: claim("5Gi", cloneOf("src"), func(s *corev1.PersistentVolumeClaimSpec) {
			s.StorageClassName = nil
		}),
		facts: Facts{Complete: true, SourceClaim: bound("5Gi", "5Gi"), SourceVolume: csiVolume("fast.csi.example.com")},
		want: []Finding{{RuleMissingClass, field.Invalid(classPath, "",
			`the claim names no storageClassName and the cluster has no default StorageClass, so it stays Pending until one exists; set spec.storageClassName to the source's class ("fast")`)}},
	}, {
		name:  "judges a migrated in-tree class by the CSI driver that replaced it",
		spec:  claim("5Gi", cloneOf("src")),
		facts: Facts{Complete: true, SourceClaim: bound("5Gi", "5Gi"), SourceVolume: csiVolume("pxd.portworx.com"), Class: &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Provisioner: "kubernetes.io/portworx-volume"}},
	}, {
		name:  "skips the driver check, with a warning, when the source's volume cannot be read",
		spec:  claim("5Gi", cloneOf("src")),
		facts: Facts{Complete: true, SourceClaim: bound("5Gi", "5Gi"), Class: fast, Unread: []Unread{{FactSourceVolume, `PersistentVolume "pv-src": forbidden`}}},
		want: []Finding{{RuleSkippedCheck, field.Invalid(sourceName, "src",
			`not checked: driver-mismatch (clonegate could not read the source's PersistentVolume: PersistentVolume "pv-src": forbidden); the claim is admitted without these checks`)}},
	}, {
		name:  "never reports a class as missing when it could not be read",
		spec:  claim("5Gi", cloneOf("src")),
		facts: Facts{Complete: true, SourceClaim: bound("5Gi", "5Gi"), SourceVolume: csiVolume("fast.csi.example.com"), Unread: []Unread{{FactClass, `StorageClass "fast": forbidden`}}},
		want: []Finding{{RuleSkippedCheck, field.Invalid(sourceName, "src",
			`not checked: missing-class, driver-mismatch (clonegate could not read the StorageClass: StorageClass "fast": forbidden); the claim is admitted without these checks`)}},
	}, {
		name:  "rejects a clone provisioned by another driver, naming both",
		spec:  claim("5Gi", cloneOf("src")),
		facts: Facts{Complete: true, SourceClaim: bound("5Gi", "5Gi"), SourceVolume: csiVolume("slow.csi.example.com"), Class: fast},
		want: []Finding{{RuleDriverMismatch, field.Invalid(classPath, "fast",
			`source PersistentVolumeClaim "src" is a volume of CSI driver "slow.csi.example.com", but StorageClass "fast" provisions with "fast.csi.example.com"; only the same driver can copy the data: use a StorageClass whose provisioner is the source's driver`)}},
	}, {
		name:  "rejects cloning a volume that is not CSI",
		spec:  claim("5Gi", cloneOf("src")),
		facts: Facts{Complete: true, SourceClaim: bound("5Gi", "5Gi"), SourceVolume: &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-src"}}, Class: fast},
		want: []Finding{{RuleDriverMismatch, field.Invalid(classPath, "fast",
			`source PersistentVolumeClaim "src" is bound to PersistentVolume "pv-src", which is not a CSI volume, but StorageClass "fast" provisions with "fast.csi.example.com"; only the same driver can copy the data: use a StorageClass whose provisioner is the source's driver`)}},
	}, {
		name:  "rejects a Filesystem clone of a Block source",
		spec:  claim("5Gi", cloneOf("src")),
		facts: cluster(bound("5Gi", "5Gi", func(c *corev1.PersistentVolumeClaim) { block(&c.Spec) })),
		want: []Finding{{RuleVolumeMode, field.Invalid(field.NewPath("spec", "volumeMode"), "Filesystem",
			`source PersistentVolumeClaim "src" has volumeMode Block; a clone must have the same mode: set spec.volumeMode to Block`)}},
	}, {
		name:  "admits a Block clone of a Block source",
		spec:  claim("5Gi", cloneOf("src"), block),
		facts: cluster(bound("5Gi", "5Gi", func(c *corev1.PersistentVolumeClaim) { block(&c.Spec) })),
	}, {
		name:  "admits a restore from a ready snapshot",
		spec:  claim("5Gi", restoreOf("nightly")),
		facts: Facts{Complete: true, SnapshotsServed: true, Snapshot: ready, Class: fast},
	}, {
		name:  "skips restores where the cluster has no snapshot API",
		spec:  claim("1Gi", restoreOf("nightly")),
		facts: Facts{Complete: true, Class: fast},
	}, {
		name:  "reports a missing snapshot",
		spec:  claim("1Gi", restoreOf("nightly")),
		facts: Facts{Complete: true, SnapshotsServed: true, Class: fast},
		want: []Finding{{RuleMissingSource, field.Invalid(sourceName, "nightly",
			`VolumeSnapshot "nightly" does not exist in namespace "ns"; the claim stays Pending until it does: create the source first or fix the name`)}},
	}, {
		name:  "rejects a restore smaller than the snapshot's restoreSize",
		spec:  claim("1Gi", restoreOf("nightly")),
		facts: Facts{Complete: true, SnapshotsServed: true, Snapshot: ready, Class: fast},
		want: []Finding{{RuleRestoreSize, field.Invalid(storage, "1Gi",
			`must be at least 5Gi, the restoreSize of VolumeSnapshot "nightly"; request 5Gi or more`)}},
	}, {
		name:  "warns of a snapshot not ready yet",
		spec:  claim("5Gi", restoreOf("nightly")),
		facts: Facts{Complete: true, SnapshotsServed: true, Snapshot: &Snapshot{}, Class: fast},
		want: []Finding{{RuleSnapshotNotReady, field.Invalid(sourceName, "nightly",
			`VolumeSnapshot "nightly" is not readyToUse yet; the claim stays Pending until it is (kubectl get volumesnapshot nightly)`)}},
	}, {
		name:  "rejects a snapshot being deleted",
		spec:  claim("5Gi", restoreOf("nightly")),
		facts: Facts{Complete: true, SnapshotsServed: true, Snapshot: &Snapshot{Deleting: true, ReadyToUse: true}, Class: fast},
		want: []Finding{{RuleSourceDeleting, field.Invalid(sourceName, "nightly",
			`VolumeSnapshot "nightly" is being deleted and cannot be restored; restore from another snapshot`)}},
	}, {
		name:  "rejects a restore by another driver",
		spec:  claim("5Gi", restoreOf("nightly")),
		facts: Facts{Complete: true, SnapshotsServed: true, Snapshot: &Snapshot{ReadyToUse: true, Driver: "slow.csi.example.com"}, Class: fast},
		want: []Finding{{RuleDriverMismatch, field.Invalid(classPath, "fast",
			`VolumeSnapshot "nightly" was taken by CSI driver "slow.csi.example.com", but StorageClass "fast" provisions with "fast.csi.example.com"; only the same driver can copy the data: use a StorageClass whose provisioner is the source's driver`)}},
	}, {
		name:  "admits a restore of a snapshot being deleted that the provisioner still protects as a source",
		spec:  claim("5Gi", restoreOf("nightly")),
		facts: Facts{Complete: true, SnapshotsServed: true, Snapshot: &Snapshot{Deleting: true, SourceProtected: true, ReadyToUse: true}, Class: fast},
	}, {
		name:  "rejects a restore in another volume mode than the snapshot's source",
		spec:  claim("5Gi", restoreOf("nightly"), block),
		facts: Facts{Complete: true, SnapshotsServed: true, Snapshot: &Snapshot{ReadyToUse: true, SourceVolumeMode: ptr(corev1.PersistentVolumeFilesystem)}, Class: fast},
		want: []Finding{{RuleVolumeMode, field.Invalid(field.NewPath("spec", "volumeMode"), "Block",
			`VolumeSnapshot "nightly" was taken from a Filesystem volume; the provisioner refuses to restore it as Block unless its VolumeSnapshotContent is annotated snapshot.storage.kubernetes.io/allow-volume-mode-change: "true": set spec.volumeMode to Filesystem`)}},
	}, {
		name:  "rejects a Filesystem restore (the default mode) of a Block snapshot",
		spec:  claim("5Gi", restoreOf("nightly")),
		facts: Facts{Complete: true, SnapshotsServed: true, Snapshot: &Snapshot{ReadyToUse: true, SourceVolumeMode: ptr(corev1.PersistentVolumeBlock)}, Class: fast},
		want: []Finding{{RuleVolumeMode, field.Invalid(field.NewPath("spec", "volumeMode"), "Filesystem",
			`VolumeSnapshot "nightly" was taken from a Block volume; the provisioner refuses to restore it as Filesystem unless its VolumeSnapshotContent is annotated snapshot.storage.kubernetes.io/allow-volume-mode-change: "true": set spec.volumeMode to Block`)}},
	}, {
		name:  "notes a restore in another mode that the content allows: the driver decides",
		spec:  claim("5Gi", restoreOf("nightly"), block),
		facts: Facts{Complete: true, SnapshotsServed: true, Snapshot: &Snapshot{ReadyToUse: true, SourceVolumeMode: ptr(corev1.PersistentVolumeFilesystem), AllowModeChange: true}, Class: fast},
		want: []Finding{{RuleVolumeModeChange, field.Invalid(field.NewPath("spec", "volumeMode"), "Block",
			`VolumeSnapshot "nightly" was taken from a Filesystem volume; its VolumeSnapshotContent allows a mode change, so the provisioner asks the CSI driver for a Block volume, which only a driver that converts volume modes provides: if the claim stays Pending, set spec.volumeMode to Filesystem`)}},
	}, {
		name:  "admits a restore in the snapshot's mode when the content allows a change",
		spec:  claim("5Gi", restoreOf("nightly")),
		facts: Facts{Complete: true, SnapshotsServed: true, Snapshot: &Snapshot{ReadyToUse: true, SourceVolumeMode: ptr(corev1.PersistentVolumeFilesystem), AllowModeChange: true}, Class: fast},
	}, {
		name:  "admits a restore of a snapshot whose source mode is unknown",
		spec:  claim("5Gi", restoreOf("nightly"), block),
		facts: Facts{Complete: true, SnapshotsServed: true, Snapshot: &Snapshot{ReadyToUse: true}, Class: fast},
	}, {
		name:  "rejects a restore with storageClassName \"\", which is never provisioned",
		spec:  claim("5Gi", restoreOf("nightly"), func(s *corev1.PersistentVolumeClaimSpec) { s.StorageClassName = ptr("") }),
		facts: Facts{Complete: true, SnapshotsServed: true, Snapshot: &Snapshot{ReadyToUse: true}},
		want: []Finding{{RuleStorageClass, field.Invalid(classPath, "",
			`a claim with storageClassName "" is never provisioned: it is bound to an existing PersistentVolume and its data source is ignored; set spec.storageClassName to the source's class`)}},
	}, {
		name:  "warns of a restore whose class does not exist yet",
		spec:  claim("5Gi", restoreOf("nightly")),
		facts: Facts{Complete: true, SnapshotsServed: true, Snapshot: &Snapshot{ReadyToUse: true}},
		want: []Finding{{RuleMissingClass, field.Invalid(classPath, "fast",
			`StorageClass "fast" does not exist, so the claim stays Pending until it does; create it first, or set spec.storageClassName to the source's class`)}},
	}, {
		name:  "skips the driver and mode checks of a restore, with a warning, when the content cannot be read",
		spec:  claim("5Gi", restoreOf("nightly")),
		facts: Facts{Complete: true, SnapshotsServed: true, Snapshot: &Snapshot{ReadyToUse: true}, Class: fast, Unread: []Unread{{FactContent, `the VolumeSnapshotContent API is not served`}}},
		want: []Finding{{RuleSkippedCheck, field.Invalid(sourceName, "nightly",
			`not checked: driver-mismatch, volume-mode (clonegate could not read the VolumeSnapshotContent: the VolumeSnapshotContent API is not served); the claim is admitted without these checks`)}},
	}, {
		name:  "rejects a restore one byte below the restoreSize but admits one rounded up to it",
		spec:  claim("5368709119500m", restoreOf("nightly")),
		facts: Facts{Complete: true, SnapshotsServed: true, Snapshot: ready, Class: fast},
	}, {
		name: "warns of a kind no API serves, even without the VolumePopulator API",
		spec: claim("1Gi", func(s *corev1.PersistentVolumeClaimSpec) {
			s.DataSourceRef = &corev1.TypedObjectReference{APIGroup: ptr("example.com"), Kind: "Backup", Name: "b"}
		}),
		facts: Facts{Complete: true, KindServed: ptr(false)},
		want: []Finding{{RuleUnknownPopulator, field.Invalid(field.NewPath("spec", "dataSourceRef", "kind"), "Backup",
			`no API in the cluster serves Backup.example.com, so nothing will ever fill this volume and the claim stays Pending; fix the kind and apiGroup, or install the API that serves it and its populator`)}},
	}, {
		name: "says a kind in the wrong case in dataSourceRef is case-sensitive",
		spec: claim("1Gi", func(s *corev1.PersistentVolumeClaimSpec) {
			s.DataSourceRef = &corev1.TypedObjectReference{APIGroup: ptr(SnapshotAPIGroup), Kind: "volumesnapshot", Name: "b"}
		}),
		facts: Facts{Complete: true, KindServed: ptr(false)},
		want: []Finding{{RuleUnknownPopulator, field.Invalid(field.NewPath("spec", "dataSourceRef", "kind"), "volumesnapshot",
			`no API in the cluster serves volumesnapshot.snapshot.storage.k8s.io, so nothing will ever fill this volume and the claim stays Pending; kind is case-sensitive: VolumeSnapshot`)}},
	}, {
		name: "warns of a populator kind nothing registers",
		spec: claim("1Gi", func(s *corev1.PersistentVolumeClaimSpec) {
			s.DataSourceRef = &corev1.TypedObjectReference{APIGroup: ptr("example.com"), Kind: "Backup", Name: "b"}
		}),
		facts: Facts{Complete: true, PopulatorKnown: ptr(false)},
		want: []Finding{{RuleUnknownPopulator, field.Invalid(field.NewPath("spec", "dataSourceRef", "kind"), "Backup",
			`no VolumePopulator is registered for Backup.example.com, so nothing will ever fill this volume and the claim stays Pending; install the populator for Backup or fix the kind and apiGroup`)}},
	}, {
		name: "says nothing of a registered populator kind",
		spec: claim("1Gi", func(s *corev1.PersistentVolumeClaimSpec) {
			s.DataSourceRef = &corev1.TypedObjectReference{APIGroup: ptr("example.com"), Kind: "Backup", Name: "b"}
		}),
		facts: Facts{Complete: true, PopulatorKnown: ptr(true)},
	}, {
		name: "says nothing of a populator kind where no one can tell",
		spec: claim("1Gi", func(s *corev1.PersistentVolumeClaimSpec) {
			s.DataSourceRef = &corev1.TypedObjectReference{APIGroup: ptr("example.com"), Kind: "Backup", Name: "b"}
		}),
		facts: Facts{Complete: true},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ValidateSource("ns", &c.spec, c.facts)
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSourceOfPointsWhereTheUserWrote(t *testing.T) {
	mirrored := func(group *string, kind string) corev1.PersistentVolumeClaimSpec {
		return corev1.PersistentVolumeClaimSpec{
			DataSource:    &corev1.TypedLocalObjectReference{APIGroup: group, Kind: kind, Name: "x"},
			DataSourceRef: &corev1.TypedObjectReference{APIGroup: group, Kind: kind, Name: "x"},
		}
	}
	cases := []struct {
		name string
		spec corev1.PersistentVolumeClaimSpec
		want string
	}{
		{"a mirrored clone points at dataSource", mirrored(nil, KindClaim), "spec.dataSource"},
		{"a mirrored snapshot points at dataSource", mirrored(ptr(SnapshotAPIGroup), KindSnapshot), "spec.dataSource"},
		{"a mirrored populator kind points at dataSourceRef", mirrored(ptr("example.com"), "Backup"), "spec.dataSourceRef"},
		{"dataSourceRef alone", corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{Kind: KindClaim, Name: "x", Namespace: ptr("other")}}, "spec.dataSourceRef"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, ok := SourceOf("ns", &c.spec)
			if !ok || src.Path.String() != c.want {
				t.Errorf("SourceOf path = %v (found %v), want %s", src.Path, ok, c.want)
			}
		})
	}
	if src, _ := SourceOf("ns", &corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{Kind: KindClaim, Name: "x", Namespace: ptr("other")}}); src.Namespace != "other" {
		t.Errorf("source namespace = %q, want the one dataSourceRef names", src.Namespace)
	}
}
