package rules

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Facts is what is known about a claim's surroundings: its source and the
// storage class it would be provisioned with. The webhook reads them from the
// cluster; `clonegate check` finds them among the manifests it was given.
type Facts struct {
	// Complete is true when an object missing below is known to be absent
	// (the cluster was asked). `clonegate check` sees only some manifests, so
	// for it a missing object is unknown and its rules are skipped.
	Complete bool

	SourceClaim  *corev1.PersistentVolumeClaim // the claim a clone copies
	SourceVolume *corev1.PersistentVolume      // the volume bound to SourceClaim
	Snapshot     *Snapshot                     // the snapshot a restore reads

	// Class is the clone's StorageClass: the one it names, or the cluster
	// default when it names none.
	Class *storagev1.StorageClass

	// SnapshotsServed is false when the cluster has no VolumeSnapshot API; the
	// snapshot rules are then skipped.
	SnapshotsServed bool
	// PopulatorKnown reports, for a source that is neither a claim nor a
	// snapshot, whether a VolumePopulator registers its kind. Nil: unknown.
	PopulatorKnown *bool
}

// Snapshot is the part of a VolumeSnapshot (and its content) the rules read.
type Snapshot struct {
	Deleting    bool
	ReadyToUse  bool
	RestoreSize *resource.Quantity
	// Driver is the CSI driver of its VolumeSnapshotContent; empty when unknown.
	Driver string
	// SourceVolumeMode is the mode of the volume it was taken of (its content's
	// spec.sourceVolumeMode); nil when unknown.
	SourceVolumeMode *corev1.PersistentVolumeMode
	// AllowVolumeModeChange is its content's AnnAllowVolumeModeChange, parsed.
	AllowVolumeModeChange bool
}

// AnnAllowVolumeModeChange on a VolumeSnapshotContent lets a restore change the volume mode.
const AnnAllowVolumeModeChange = "snapshot.storage.kubernetes.io/allow-volume-mode-change"

// ValidateSource judges a claim against the object it is filled from. It
// returns one finding per mistake; a Policy decides which deny.
func ValidateSource(namespace string, spec *corev1.PersistentVolumeClaimSpec, facts Facts) []Finding {
	src, ok := SourceOf(namespace, spec)
	if !ok {
		return nil
	}
	switch {
	case src.IsClone():
		return validateClone(src, spec, facts)
	case src.IsSnapshot():
		return validateRestore(src, spec, facts)
	case facts.PopulatorKnown != nil && !*facts.PopulatorKnown && src.APIGroup != "":
		return []Finding{finding(RuleUnknownPopulator, src.Path.Child("kind"), src.Kind, fmt.Sprintf(
			"no VolumePopulator is registered for %s.%s, so nothing will ever fill this volume and the claim stays Pending; "+
				"install the populator for %s or fix the kind and apiGroup", src.Kind, src.APIGroup, src.Kind))}
	}
	return nil
}

func validateClone(src Source, spec *corev1.PersistentVolumeClaimSpec, facts Facts) []Finding {
	source := facts.SourceClaim
	if source == nil {
		if !facts.Complete {
			return nil
		}
		return []Finding{missing(src)}
	}
	var out []Finding
	if source.DeletionTimestamp != nil {
		out = append(out, finding(RuleSourceDeleting, src.Path.Child("name"), src.Name, fmt.Sprintf(
			"source PersistentVolumeClaim %q is being deleted and cannot be cloned; clone another claim or restore from a snapshot", src.Name)))
	} else if source.Status.Phase != corev1.ClaimBound {
		phase := source.Status.Phase
		if phase == "" {
			phase = corev1.ClaimPending
		}
		out = append(out, finding(RuleSourceNotBound, src.Path.Child("name"), src.Name, fmt.Sprintf(
			"source PersistentVolumeClaim %q is %s, not Bound; the clone stays Pending until the source is bound to a volume", src.Name, phase)))
	}
	// The external-provisioner compares the clone's request with the source's request only;
	// a source volume larger than its request (rounded up by the driver, or a bigger static
	// volume) is the driver's affair: most refuse a smaller clone, some round the clone up too.
	request := sourceRequest(source)
	if f, ok := checkSize(spec, RuleCloneSize, request, fmt.Sprintf("the size of source PersistentVolumeClaim %q", src.Name)); ok {
		out = append(out, f)
	} else if f, ok := checkCapacity(spec, source, request, src.Name); ok {
		out = append(out, f)
	}
	out = append(out, checkClasses(src, spec, source, facts)...)
	if want, got := volumeMode(source.Spec.VolumeMode), volumeMode(spec.VolumeMode); want != got {
		out = append(out, finding(RuleVolumeMode, specPath.Child("volumeMode"), string(got), fmt.Sprintf(
			"source PersistentVolumeClaim %q has volumeMode %s; a clone must have the same mode: set spec.volumeMode to %s", src.Name, want, want)))
	}
	return out
}

func validateRestore(src Source, spec *corev1.PersistentVolumeClaimSpec, facts Facts) []Finding {
	if !facts.SnapshotsServed {
		return nil
	}
	snap := facts.Snapshot
	if snap == nil {
		if !facts.Complete {
			return nil
		}
		return []Finding{missing(src)}
	}
	var out []Finding
	switch {
	case snap.Deleting:
		out = append(out, finding(RuleSourceDeleting, src.Path.Child("name"), src.Name, fmt.Sprintf(
			"VolumeSnapshot %q is being deleted and cannot be restored; restore from another snapshot", src.Name)))
	case !snap.ReadyToUse:
		out = append(out, finding(RuleSnapshotNotReady, src.Path.Child("name"), src.Name, fmt.Sprintf(
			"VolumeSnapshot %q is not readyToUse yet; the claim stays Pending until it is (kubectl get volumesnapshot %s)", src.Name, src.Name)))
	}
	if snap.RestoreSize != nil {
		if f, ok := checkSize(spec, RuleRestoreSize, snap.RestoreSize, fmt.Sprintf("the restoreSize of VolumeSnapshot %q", src.Name)); ok {
			out = append(out, f)
		}
	}
	if f, ok := emptyClass(spec, src); ok {
		out = append(out, f)
	}
	// external-provisioner (--prevent-volume-mode-conversion, on by default) refuses a restore in
	// the other mode unless the content allows it.
	if m := snap.SourceVolumeMode; m != nil && !snap.AllowVolumeModeChange && *m != volumeMode(spec.VolumeMode) {
		out = append(out, finding(RuleVolumeMode, specPath.Child("volumeMode"), string(volumeMode(spec.VolumeMode)), fmt.Sprintf(
			"VolumeSnapshot %q was taken of a %s volume; the provisioner restores it only as %s unless its VolumeSnapshotContent "+
				"is annotated %s: \"true\": set spec.volumeMode to %s", src.Name, *m, *m, AnnAllowVolumeModeChange, *m)))
	}
	if facts.Class != nil && snap.Driver != "" && snap.Driver != facts.Class.Provisioner {
		out = append(out, driverMismatch(spec, facts.Class, fmt.Sprintf("VolumeSnapshot %q was taken by CSI driver %q", src.Name, snap.Driver)))
	}
	return out
}

// checkClasses checks that both claims have a class and that the source's
// volume belongs to the driver that would provision the clone.
func checkClasses(src Source, spec *corev1.PersistentVolumeClaimSpec, source *corev1.PersistentVolumeClaim, facts Facts) []Finding {
	var out []Finding
	// Only an unset class stops the provisioner (it refuses a nil source class); a source with
	// storageClassName "" bound to a volume of the right driver is cloned like any other.
	if source.Spec.StorageClassName == nil {
		out = append(out, finding(RuleStorageClass, src.Path.Child("name"), src.Name, fmt.Sprintf(
			"source PersistentVolumeClaim %q has no storage class, so no CSI driver can clone it; clone a claim provisioned from a StorageClass", src.Name)))
	}
	if f, ok := emptyClass(spec, src); ok {
		return append(out, f)
	}
	if facts.Complete && facts.Class == nil {
		named := className(spec.StorageClassName)
		detail := "the claim names no storageClassName and the cluster has no default StorageClass; set spec.storageClassName to the source's class"
		if named != "" {
			detail = fmt.Sprintf("StorageClass %q does not exist; set spec.storageClassName to the source's class", named)
		}
		if c := className(source.Spec.StorageClassName); c != "" {
			detail += fmt.Sprintf(" (%q)", c)
		}
		out = append(out, finding(RuleStorageClass, specPath.Child("storageClassName"), named, detail))
	}
	if facts.Class == nil || facts.SourceVolume == nil {
		return out
	}
	if csi := facts.SourceVolume.Spec.CSI; csi == nil {
		out = append(out, driverMismatch(spec, facts.Class, fmt.Sprintf("source PersistentVolumeClaim %q is bound to PersistentVolume %q, which is not a CSI volume", src.Name, facts.SourceVolume.Name)))
	} else if csi.Driver != facts.Class.Provisioner {
		out = append(out, driverMismatch(spec, facts.Class, fmt.Sprintf("source PersistentVolumeClaim %q is a volume of CSI driver %q", src.Name, csi.Driver)))
	}
	return out
}

// emptyClass reports storageClassName "": such a claim only binds a pre-made volume without a
// class, so nothing provisions it from its source (measured: Pending, "no persistent volumes
// available for this claim and no storage class is set").
func emptyClass(spec *corev1.PersistentVolumeClaimSpec, src Source) (Finding, bool) {
	if spec.StorageClassName == nil || *spec.StorageClassName != "" {
		return Finding{}, false
	}
	return finding(RuleStorageClass, specPath.Child("storageClassName"), "", fmt.Sprintf(
		`storageClassName "" only binds an existing volume without a class, so nothing copies %s %q into it; `+
			"name the StorageClass of the source's driver, or leave storageClassName out for the default class", src.Kind, src.Name)), true
}

func driverMismatch(spec *corev1.PersistentVolumeClaimSpec, class *storagev1.StorageClass, what string) Finding {
	return finding(RuleDriverMismatch, specPath.Child("storageClassName"), className(spec.StorageClassName), fmt.Sprintf(
		"%s, but StorageClass %q provisions with %q; only the same driver can copy the data: use a StorageClass whose provisioner is the source's driver",
		what, class.Name, class.Provisioner))
}

// checkSize reports a request smaller than min, naming both sizes.
func checkSize(spec *corev1.PersistentVolumeClaimSpec, rule Rule, min *resource.Quantity, what string) (Finding, bool) {
	if min == nil {
		return Finding{}, false
	}
	req, ok := spec.Resources.Requests[storageRequestKey]
	if !ok {
		return finding(rule, storagePath, "", fmt.Sprintf(
			"a claim filled from a source must request storage: request %s or more (%s)", min, what)), true
	}
	if req.Cmp(*min) >= 0 {
		return Finding{}, false
	}
	return finding(rule, storagePath, req.String(), fmt.Sprintf(
		"must be at least %s, %s; request %s or more", min, what, min)), true
}

// sourceRequest is what the source claim asked for: what the external-provisioner compares
// a clone's request with.
func sourceRequest(claim *corev1.PersistentVolumeClaim) *resource.Quantity {
	if q, ok := claim.Spec.Resources.Requests[storageRequestKey]; ok {
		return &q
	}
	return nil
}

// checkCapacity reports a clone at least as large as the source's request but smaller than the
// volume the source got: the provisioner passes it to the driver, and a driver that does not
// round the clone up as it rounded the source refuses it (csi-driver-host-path: OUT_OF_RANGE).
func checkCapacity(spec *corev1.PersistentVolumeClaimSpec, source *corev1.PersistentVolumeClaim, request *resource.Quantity, name string) (Finding, bool) {
	capacity, ok := source.Status.Capacity[storageRequestKey]
	req, has := spec.Resources.Requests[storageRequestKey]
	if !ok || !has || request == nil || capacity.Cmp(*request) <= 0 || req.Cmp(capacity) >= 0 {
		return Finding{}, false
	}
	return finding(RuleCloneCapacity, storagePath, req.String(), fmt.Sprintf(
		"is smaller than the %s volume of source PersistentVolumeClaim %q (it requested %s); the provisioner passes it on, "+
			"but a CSI driver that does not round the clone up to %s refuses it and the claim stays Pending: request %s to be sure",
		capacity.String(), name, request.String(), capacity.String(), capacity.String())), true
}

func missing(src Source) Finding {
	return finding(RuleMissingSource, src.Path.Child("name"), src.Name, fmt.Sprintf(
		"%s %q does not exist in namespace %q; the claim stays Pending until it does: create the source first or fix the name",
		src.Kind, src.Name, src.Namespace))
}

func volumeMode(m *corev1.PersistentVolumeMode) corev1.PersistentVolumeMode {
	if m == nil {
		return corev1.PersistentVolumeFilesystem
	}
	return *m
}

func className(name *string) string {
	if name == nil {
		return ""
	}
	return *name
}
