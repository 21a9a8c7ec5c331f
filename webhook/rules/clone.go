package rules

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	csitrans "k8s.io/csi-translation-lib"
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

	// Class is the claim's StorageClass: the one it names, or the cluster
	// default when it names none.
	Class *storagev1.StorageClass

	// SnapshotsServed is false when the cluster has no VolumeSnapshot API; the
	// snapshot rules are then skipped.
	SnapshotsServed bool
	// KindServed reports, for a source that is neither a claim nor a
	// snapshot, whether any API in the cluster serves its kind. Nil: unknown.
	KindServed *bool
	// PopulatorKnown reports, for such a source, whether a VolumePopulator
	// registers its kind. Nil: unknown (no VolumePopulator API to ask).
	PopulatorKnown *bool

	// Unread lists secondary facts that could not be read (not served,
	// forbidden to clonegate, gone, or an error). The rules that need one are
	// skipped with a warning that says so: an unreadable fact never denies.
	Unread []Unread
}

// Fact names a secondary object the rules read.
type Fact string

// The secondary facts. The source itself is not among them: a source that
// cannot be read fails the review closed (on a transient error) instead.
const (
	FactSourceVolume Fact = "the source's PersistentVolume"
	FactContent      Fact = "the VolumeSnapshotContent"
	FactClass        Fact = "the StorageClass"
	FactPopulators   Fact = "the VolumePopulators"
)

// Unread is a secondary fact that could not be read, and why.
type Unread struct {
	Fact Fact
	Why  string // e.g. `VolumeSnapshotContent "c": forbidden: ...`
}

func (f Facts) unread(fact Fact) bool {
	for _, u := range f.Unread {
		if u.Fact == fact {
			return true
		}
	}
	return false
}

// Snapshot is the part of a VolumeSnapshot (and its content) the rules read.
type Snapshot struct {
	Deleting bool
	// SourceProtected: the snapshot carries the external-provisioner's
	// volumesnapshot-as-source-protection finalizer, so it is still restored
	// from while being deleted.
	SourceProtected bool
	ReadyToUse      bool
	RestoreSize     *resource.Quantity
	// From its VolumeSnapshotContent (empty or nil when unknown): the CSI
	// driver, the volume mode of the volume it was taken from, and whether the
	// content allows a restore in another mode.
	Driver           string
	SourceVolumeMode *corev1.PersistentVolumeMode
	AllowModeChange  bool
}

// SnapshotSourceProtectionFinalizer is put on a VolumeSnapshot by the
// external-provisioner while a volume is provisioned from it; it goes on
// restoring such a snapshot even while it is being deleted.
const SnapshotSourceProtectionFinalizer = "provisioner.storage.kubernetes.io/volumesnapshot-as-source-protection"

// AllowVolumeModeChangeAnnotation on a VolumeSnapshotContent lets a restore
// change the volume mode, which external-provisioner otherwise refuses
// (--prevent-volume-mode-conversion, on by default).
const AllowVolumeModeChangeAnnotation = "snapshot.storage.kubernetes.io/allow-volume-mode-change"

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
	}
	return validatePopulated(src, facts)
}

// validatePopulated judges a source of any other kind: something must serve
// it and fill the volume, or the claim stays Pending forever.
func validatePopulated(src Source, facts Facts) []Finding {
	if src.APIGroup == "" {
		return nil // rejected by the apiserver's validation, with its own message
	}
	gk := src.Kind + "." + src.APIGroup
	switch {
	case facts.KindServed != nil && !*facts.KindServed:
		hint := "fix the kind and apiGroup, or install the API that serves it and its populator"
		for _, known := range []string{KindClaim, KindSnapshot} {
			if src.Kind != known && strings.EqualFold(src.Kind, known) {
				hint = "kind is case-sensitive: " + known
			}
		}
		return []Finding{finding(RuleUnknownPopulator, src.Path.Child("kind"), src.Kind, fmt.Sprintf(
			"no API in the cluster serves %s, so nothing will ever fill this volume and the claim stays Pending; %s", gk, hint))}
	case facts.PopulatorKnown != nil && !*facts.PopulatorKnown:
		return []Finding{finding(RuleUnknownPopulator, src.Path.Child("kind"), src.Kind, fmt.Sprintf(
			"no VolumePopulator is registered for %s, so nothing will ever fill this volume and the claim stays Pending; "+
				"install the populator for %s or fix the kind and apiGroup", gk, src.Kind))}
	}
	return skipped(src, facts, FactPopulators, RuleUnknownPopulator)
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
	out = append(out, checkCloneSize(src, spec, source)...)
	out = append(out, checkClasses(src, spec, source, facts)...)
	if want, got := volumeMode(source.Spec.VolumeMode), volumeMode(spec.VolumeMode); want != got {
		out = append(out, finding(RuleVolumeMode, specPath.Child("volumeMode"), string(got), fmt.Sprintf(
			"source PersistentVolumeClaim %q has volumeMode %s; a clone must have the same mode: set spec.volumeMode to %s", src.Name, want, want)))
	}
	return out
}

// checkCloneSize compares the clone's request with the source's request, as
// the external-provisioner does (clone-size), and with the source's real
// capacity, which most CSI drivers refuse to shrink (clone-capacity).
func checkCloneSize(src Source, spec *corev1.PersistentVolumeClaimSpec, source *corev1.PersistentVolumeClaim) []Finding {
	request, hasRequest := source.Spec.Resources.Requests[storageRequestKey]
	if hasRequest {
		if f, ok := checkSize(spec, RuleCloneSize, request, func() string {
			return fmt.Sprintf("the size of source PersistentVolumeClaim %q", src.Name)
		}); ok {
			return []Finding{f}
		}
	}
	capacity, ok := source.Status.Capacity[storageRequestKey]
	if !ok || (hasRequest && capacity.Value() <= request.Value()) {
		return nil
	}
	f, ok := checkSize(spec, RuleCloneCapacity, capacity, func() string {
		what := fmt.Sprintf("the capacity of source PersistentVolumeClaim %q", src.Name)
		if hasRequest {
			what += fmt.Sprintf(" (it requested %s; its volume is larger, rounded up or expanded)", request.String())
		}
		return what
	})
	if !ok {
		return nil
	}
	f.Err.Detail += fmt.Sprintf("; the provisioner passes it on, but a CSI driver that does not round the clone up as it rounded the source "+
		"refuses it and the claim stays Pending (set rule %s to deny where your driver does)", RuleCloneCapacity)
	return []Finding{f}
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
	case snap.Deleting && !snap.SourceProtected:
		out = append(out, finding(RuleSourceDeleting, src.Path.Child("name"), src.Name, fmt.Sprintf(
			"VolumeSnapshot %q is being deleted and cannot be restored; restore from another snapshot", src.Name)))
	case !snap.ReadyToUse:
		out = append(out, finding(RuleSnapshotNotReady, src.Path.Child("name"), src.Name, fmt.Sprintf(
			"VolumeSnapshot %q is not readyToUse yet; the claim stays Pending until it is (kubectl get volumesnapshot %s)", src.Name, src.Name)))
	}
	if snap.RestoreSize != nil {
		if f, ok := checkSize(spec, RuleRestoreSize, *snap.RestoreSize, func() string {
			return fmt.Sprintf("the restoreSize of VolumeSnapshot %q", src.Name)
		}); ok {
			out = append(out, f)
		}
	}
	out = append(out, checkClaimClass(spec, facts, "")...)
	if facts.Class != nil && snap.Driver != "" && snap.Driver != provisionerOf(facts.Class) {
		out = append(out, driverMismatch(spec, facts.Class, fmt.Sprintf("VolumeSnapshot %q was taken by CSI driver %q", src.Name, snap.Driver)))
	}
	if m := snap.SourceVolumeMode; m != nil && *m != volumeMode(spec.VolumeMode) {
		if snap.AllowModeChange {
			out = append(out, finding(RuleVolumeModeChange, specPath.Child("volumeMode"), string(volumeMode(spec.VolumeMode)), fmt.Sprintf(
				"VolumeSnapshot %q was taken from a %s volume; its VolumeSnapshotContent allows a mode change, so the provisioner asks the "+
					"CSI driver for a %s volume, which only a driver that converts volume modes provides: if the claim stays Pending, "+
					"set spec.volumeMode to %s", src.Name, *m, volumeMode(spec.VolumeMode), *m)))
		} else {
			out = append(out, finding(RuleVolumeMode, specPath.Child("volumeMode"), string(volumeMode(spec.VolumeMode)), fmt.Sprintf(
				"VolumeSnapshot %q was taken from a %s volume; the provisioner refuses to restore it as %s unless its VolumeSnapshotContent "+
					"is annotated %s: \"true\": set spec.volumeMode to %s", src.Name, *m, volumeMode(spec.VolumeMode), AllowVolumeModeChangeAnnotation, *m)))
		}
	}
	out = append(out, skipped(src, facts, FactClass, RuleMissingClass, RuleDriverMismatch)...)
	return append(out, skipped(src, facts, FactContent, RuleDriverMismatch, RuleVolumeMode)...)
}

// checkClasses checks that the source has a class, that the clone's class is
// usable, and that the source's volume belongs to the driver that would
// provision the clone.
func checkClasses(src Source, spec *corev1.PersistentVolumeClaimSpec, source *corev1.PersistentVolumeClaim, facts Facts) []Finding {
	var out []Finding
	// The provisioner refuses a source with no storageClassName at all; an
	// explicit "" is fine as long as its volume is the driver's.
	if source.Spec.StorageClassName == nil {
		out = append(out, finding(RuleStorageClass, src.Path.Child("name"), src.Name, fmt.Sprintf(
			"source PersistentVolumeClaim %q has no storageClassName, and the provisioner refuses to clone such a claim; clone a claim provisioned from a StorageClass", src.Name)))
	}
	out = append(out, checkClaimClass(spec, facts, className(source.Spec.StorageClassName))...)
	out = append(out, skipped(src, facts, FactClass, RuleMissingClass, RuleDriverMismatch)...)
	out = append(out, skipped(src, facts, FactSourceVolume, RuleDriverMismatch)...)
	if facts.Class == nil || facts.SourceVolume == nil {
		return out
	}
	if csi := facts.SourceVolume.Spec.CSI; csi == nil {
		out = append(out, driverMismatch(spec, facts.Class, fmt.Sprintf("source PersistentVolumeClaim %q is bound to PersistentVolume %q, which is not a CSI volume", src.Name, facts.SourceVolume.Name)))
	} else if csi.Driver != provisionerOf(facts.Class) {
		out = append(out, driverMismatch(spec, facts.Class, fmt.Sprintf("source PersistentVolumeClaim %q is a volume of CSI driver %q", src.Name, csi.Driver)))
	}
	return out
}

// checkClaimClass checks the class of the claim being filled. An explicit
// storageClassName "" is never provisioned: the PV controller binds it to any
// matching classless PersistentVolume and the source is ignored, so it is
// denied. A class that does not exist (yet) only leaves the claim Pending
// until it does, and is provisioned then: a warning.
func checkClaimClass(spec *corev1.PersistentVolumeClaimSpec, facts Facts, sourceClass string) []Finding {
	use := func() string {
		if sourceClass != "" {
			return fmt.Sprintf("set spec.storageClassName to the source's class (%q)", sourceClass)
		}
		return "set spec.storageClassName to the source's class"
	}
	if spec.StorageClassName != nil && *spec.StorageClassName == "" {
		return []Finding{finding(RuleStorageClass, specPath.Child("storageClassName"), "",
			"a claim with storageClassName \"\" is never provisioned: it is bound to an existing PersistentVolume and its data source is ignored; "+use())}
	}
	if facts.unread(FactClass) {
		return nil // skipped below, with the rules that need it
	}
	if !facts.Complete || facts.Class != nil {
		return nil
	}
	detail := "the claim names no storageClassName and the cluster has no default StorageClass, so it stays Pending until one exists; " + use()
	if named := className(spec.StorageClassName); named != "" {
		detail = fmt.Sprintf("StorageClass %q does not exist, so the claim stays Pending until it does; create it first, or %s", named, use())
	}
	return []Finding{finding(RuleMissingClass, specPath.Child("storageClassName"), className(spec.StorageClassName), detail)}
}

// provisionerOf is the CSI driver that provisions with class: its
// provisioner, or for an in-tree provisioner migrated to CSI the driver that
// replaced it, as the external-provisioner translates it.
func provisionerOf(class *storagev1.StorageClass) string {
	if translator.IsMigratableIntreePluginByName(class.Provisioner) {
		if name, err := translator.GetCSINameFromInTreeName(class.Provisioner); err == nil {
			return name
		}
	}
	return class.Provisioner
}

var translator = csitrans.New()

func driverMismatch(spec *corev1.PersistentVolumeClaimSpec, class *storagev1.StorageClass, what string) Finding {
	return finding(RuleDriverMismatch, specPath.Child("storageClassName"), className(spec.StorageClassName), fmt.Sprintf(
		"%s, but StorageClass %q provisions with %q; only the same driver can copy the data: use a StorageClass whose provisioner is the source's driver",
		what, class.Name, provisionerOf(class)))
}

// skipped is the skipped-check warning for each unread fact among needs:
// which checks were not made, and why.
func skipped(src Source, facts Facts, fact Fact, rules ...Rule) []Finding {
	var out []Finding
	for _, u := range facts.Unread {
		if u.Fact != fact {
			continue
		}
		names := make([]string, len(rules))
		for i, r := range rules {
			names[i] = string(r)
		}
		out = append(out, finding(RuleSkippedCheck, src.Path.Child("name"), src.Name, fmt.Sprintf(
			"not checked: %s (clonegate could not read %s: %s); the claim is admitted without these checks",
			strings.Join(names, ", "), u.Fact, u.Why)))
	}
	return out
}

// checkSize reports a request smaller than min, naming both sizes and what
// min is (what is called only then: most claims are large enough). Sizes are
// compared in whole bytes, rounded up, as the external-provisioner does.
func checkSize(spec *corev1.PersistentVolumeClaimSpec, rule Rule, min resource.Quantity, what func() string) (Finding, bool) {
	req, ok := spec.Resources.Requests[storageRequestKey]
	if !ok {
		return finding(rule, storagePath, "", fmt.Sprintf(
			"a claim filled from a source must request storage: request %s or more (%s)", min.String(), what())), true
	}
	if req.Value() >= min.Value() {
		return Finding{}, false
	}
	least := min.String()
	return finding(rule, storagePath, req.String(), fmt.Sprintf(
		"must be at least %s, %s; request %s or more", least, what(), least)), true
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
