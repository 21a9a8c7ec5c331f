package matrix

import (
	corev1 "k8s.io/api/core/v1"
)

// row is one scenario of the matrix: the objects it starts from, the claim under test, and what
// it expects without clonegate (Kubernetes alone) and with it.
type row struct {
	id      string // namespace prefix, short
	name    string // what is tried, as the table says it
	rule    string // the rule the row is about ("" for control rows)
	gates   []string
	setup   func(s *scenario) error
	claim   func(s *scenario) *corev1.PersistentVolumeClaim
	consume bool // WaitForFirstConsumer: act as the scheduler once the claim exists
	without want
	with    want
	// Expectations with the CrossNamespaceVolumeDataSource gate on, when they differ.
	withoutGateOn, withGateOn *want
	// known names the issue tracking a disagreement not fixed yet: the row's problems are shown,
	// and logged, but do not fail the test.
	known string
	// byPolicy explains a denial of what Kubernetes provisions that the default policy makes on
	// purpose (and how to lift it); the matrix shows it instead of failing.
	byPolicy string
}

const (
	ready    = "ProvisioningFailed" // the provisioner refused: the event on every retry
	noBind   = "FailedBinding"
	external = "ExternalProvisioning"
)

var (
	off  = []string{"off"}
	both = []string{"off", "on"}
)

// Sources.

func src(o claimOpts) func(*scenario) error {
	return func(s *scenario) error { return s.source("src", o) }
}

func srcAndSnapshot(o claimOpts, class string) func(*scenario) error {
	return func(s *scenario) error {
		if err := s.source("src", o); err != nil {
			return err
		}
		return s.snapshot("snap", "src", class)
	}
}

func steps(fs ...func(*scenario) error) func(*scenario) error {
	return func(s *scenario) error {
		for _, f := range fs {
			if err := f(s); err != nil {
				return err
			}
		}
		return nil
	}
}

// expand raises the source's request, as `kubectl edit` would; no resizer runs, so its volume and
// status.capacity stay as they were: an expansion in progress.
func expand(size string) func(*scenario) error {
	return func(s *scenario) error {
		r := s.c.kubectl("", "patch", "-n", s.ns, "pvc", "src", "--type=merge",
			"-p", `{"spec":{"resources":{"requests":{"storage":"`+size+`"}}}}`)
		if r.Code != 0 {
			return errorf("expanding src: %s", r.Output())
		}
		return nil
	}
}

// seeded makes claim "src" (class, size) bound to a static volume that is really seed's volume, a
// claim the driver provisioned with size seedSize: what an administrator's hand-made PV looks like.
func seeded(class *string, size, seedSize string) func(*scenario) error {
	return func(s *scenario) error {
		if err := s.source("seed", claimOpts{size: seedSize}); err != nil {
			return err
		}
		h, path, err := s.handle("seed")
		if err != nil {
			return err
		}
		cls := ""
		if class != nil {
			cls = *class
		}
		if err := s.staticVolume("src", "src", cls, seedSize, driver, h, path); err != nil {
			return err
		}
		c := claim("src", claimOpts{size: size, class: class})
		c.Spec.VolumeName = s.ns + "-src"
		if err := s.create(c); err != nil {
			return err
		}
		_, err = s.boundPath("src", minute)
		return err
	}
}

// foreign makes claim "src" bound to a volume of another CSI driver.
func foreign(s *scenario) error {
	if err := s.staticVolume("src", "src", classImmediate, "1Gi", "other.example.com", "vol-foreign", ""); err != nil {
		return err
	}
	c := claim("src", claimOpts{class: str(classImmediate)})
	c.Spec.VolumeName = s.ns + "-src"
	if err := s.create(c); err != nil {
		return err
	}
	return waitBound(s, "src")
}

// grant lets claims in the row's namespace use claim "src" of its second namespace.
func grant(s *scenario) error {
	r := s.c.kubectl(`apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: clones, namespace: `+s.ns+`-src}
spec:
  from: [{group: "", kind: PersistentVolumeClaim, namespace: `+s.ns+`}]
  to: [{group: "", kind: PersistentVolumeClaim, name: src}]
`, "create", "-f", "-")
	if r.Code != 0 {
		return errorf("creating the ReferenceGrant: %s", r.Output())
	}
	return nil
}

func deletingClaim(s *scenario) error {
	return s.deleting(&corev1.PersistentVolumeClaim{ObjectMeta: metaName(s, "src")})
}

func deletingSnapshot(s *scenario) error { return s.deleting(snapshotObject(s, "snap")) }

// allowModeChange annotates the content of snapshot "snap" as an administrator does to let
// restores change the volume mode: the provisioner then passes the request to the driver.
func allowModeChange(s *scenario) error {
	r := s.c.kubectl("", "get", "-n", s.ns, "volumesnapshot", "snap", "-o", "jsonpath={.status.boundVolumeSnapshotContentName}")
	if r.Code != 0 || r.Stdout == "" {
		return errorf("reading the content of snap: %s", r.Output())
	}
	if r := s.c.kubectl("", "annotate", "volumesnapshotcontent", r.Stdout, "snapshot.storage.kubernetes.io/allow-volume-mode-change=true"); r.Code != 0 {
		return errorf("annotating the content: %s", r.Output())
	}
	return nil
}

// The claim under test, always named "clone".

func clone(o claimOpts, kind string, group *string, name string) func(*scenario) *corev1.PersistentVolumeClaim {
	return func(*scenario) *corev1.PersistentVolumeClaim {
		c := claim(claimName, withDefaultClass(o))
		c.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: group, Kind: kind, Name: name}
		return c
	}
}

// ref fills spec.dataSourceRef instead; ns "" leaves its namespace out, "own" names the claim's,
// "other" the row's second namespace.
func ref(o claimOpts, kind string, group *string, name, ns string) func(*scenario) *corev1.PersistentVolumeClaim {
	return func(s *scenario) *corev1.PersistentVolumeClaim {
		c := claim(claimName, withDefaultClass(o))
		r := &corev1.TypedObjectReference{APIGroup: group, Kind: kind, Name: name}
		switch ns {
		case "own":
			r.Namespace = str(s.ns)
		case "other":
			r.Namespace = str(s.ns + "-src")
		}
		c.Spec.DataSourceRef = r
		return c
	}
}

func plain(o claimOpts) func(*scenario) *corev1.PersistentVolumeClaim {
	return func(*scenario) *corev1.PersistentVolumeClaim { return claim(claimName, withDefaultClass(o)) }
}

// withDefaultClass names the matrix's class unless the row says otherwise; noClass leaves
// storageClassName out.
func withDefaultClass(o claimOpts) claimOpts {
	switch {
	case o.class == nil:
		o.class = str(classImmediate)
	case *o.class == noClass:
		o.class = nil
	}
	return o
}

const noClass = "\x00none"

var (
	pvcKind   = "PersistentVolumeClaim"
	snapKind  = "VolumeSnapshot"
	snapGroup = str("snapshot.storage.k8s.io")
)

// rows is the matrix. Expectations are what the real pipeline does (measured) and what clonegate
// should answer; the invariants in checkAgreement hold whatever the expectations say.
var rows = []row{
	// Clones.
	{id: "clone", name: "clone, same size as the source", gates: off,
		setup: src(claimOpts{}), claim: clone(claimOpts{}, pvcKind, nil, "src"),
		without: want{result: boundData}, with: want{result: boundData}},
	{id: "clone-ref", name: "clone through dataSourceRef", gates: off,
		setup: src(claimOpts{}), claim: ref(claimOpts{}, pvcKind, nil, "src", ""),
		without: want{result: boundData}, with: want{result: boundData}},
	{id: "clone-bigger", name: "clone larger than the source", gates: off,
		setup: src(claimOpts{}), claim: clone(claimOpts{size: "2Gi"}, pvcKind, nil, "src"),
		without: want{result: boundData}, with: want{result: boundData}},
	{id: "clone-units", name: "clone of 1024Mi from a 1Gi source", gates: off,
		setup: src(claimOpts{}), claim: clone(claimOpts{size: "1024Mi"}, pvcKind, nil, "src"),
		without: want{result: boundData}, with: want{result: boundData}},
	{id: "clone-small", name: "clone smaller than the source's request", rule: "clone-size", gates: off,
		setup: src(claimOpts{size: "2Gi"}), claim: clone(claimOpts{}, pvcKind, nil, "src"),
		without: want{result: pending, event: ready}, with: want{result: denied, rule: "clone-size"}},
	{id: "clone-expanded-small", name: "clone of the old size of a source being expanded", rule: "clone-size", gates: off,
		setup: steps(src(claimOpts{}), expand("2Gi")), claim: clone(claimOpts{}, pvcKind, nil, "src"),
		without: want{result: pending, event: ready}, with: want{result: denied, rule: "clone-size"}},
	{id: "clone-expanded", name: "clone of the new size of a source being expanded", rule: "clone-size", gates: off,
		setup: steps(src(claimOpts{}), expand("2Gi")), claim: clone(claimOpts{size: "2Gi"}, pvcKind, nil, "src"),
		without: want{result: boundData}, with: want{result: boundData}},
	{id: "clone-rounded", name: "clone of a source the driver rounded up (1500Mi → 2Gi), same rounding class", rule: "clone-capacity", gates: off,
		setup: src(claimOpts{size: "1500Mi", class: str(classRound)}), claim: clone(claimOpts{size: "1500Mi", class: str(classRound)}, pvcKind, nil, "src"),
		without: want{result: boundData}, with: want{result: boundData, rule: "clone-capacity"}},
	{id: "clone-rounded-plain", name: "clone of a source the driver rounded up, into a class that does not round", rule: "clone-capacity", gates: off,
		setup: src(claimOpts{size: "1500Mi", class: str(classRound)}), claim: clone(claimOpts{size: "1500Mi"}, pvcKind, nil, "src"),
		without: want{result: pending, event: ready}, with: want{result: pending, event: ready, rule: "clone-capacity"}},
	{id: "clone-static-big", name: "clone of a 1Gi claim bound to a 5Gi volume", rule: "clone-capacity", gates: off,
		setup: seeded(str(classImmediate), "1Gi", "5Gi"), claim: clone(claimOpts{}, pvcKind, nil, "src"),
		without: want{result: pending, event: ready}, with: want{result: pending, event: ready, rule: "clone-capacity"}},
	{id: "clone-missing", name: "clone of a claim that does not exist", rule: "missing-source", gates: off,
		claim:   clone(claimOpts{}, pvcKind, nil, "src"),
		without: want{result: pending, event: ready}, with: want{result: pending, rule: "missing-source"}},
	{id: "clone-unbound", name: "clone of a WaitForFirstConsumer source no Pod uses yet (Pending)", rule: "source-not-bound", gates: off,
		setup:   func(s *scenario) error { return s.create(claim("src", claimOpts{class: str(classWFFC)})) },
		claim:   clone(claimOpts{}, pvcKind, nil, "src"),
		without: want{result: pending, event: ready}, with: want{result: pending, rule: "source-not-bound"}},
	{id: "clone-wffc", name: "WaitForFirstConsumer source and clone, each once a Pod is scheduled", gates: off,
		setup: src(claimOpts{class: str(classWFFC)}), claim: clone(claimOpts{class: str(classWFFC)}, pvcKind, nil, "src"), consume: true,
		without: want{result: boundData}, with: want{result: boundData}},
	{id: "clone-deleting", name: "clone of a source being deleted", rule: "source-deleting", gates: off,
		setup: steps(src(claimOpts{}), deletingClaim), claim: clone(claimOpts{}, pvcKind, nil, "src"),
		without: want{result: pending, event: ready}, with: want{result: denied, rule: "source-deleting"}},
	{id: "clone-class-empty", name: `clone with storageClassName ""`, rule: "storage-class", gates: off,
		setup: src(claimOpts{}), claim: clone(claimOpts{class: str("")}, pvcKind, nil, "src"),
		without: want{result: pending, event: noBind}, with: want{result: denied, rule: "storage-class"}},
	{id: "clone-class-missing", name: "clone in a StorageClass that does not exist (yet)", rule: "missing-class", gates: off,
		setup: src(claimOpts{}), claim: clone(claimOpts{class: str("matrix-nonexistent")}, pvcKind, nil, "src"),
		without: want{result: pending, event: ready}, with: want{result: pending, event: ready, rule: "missing-class"}},
	{id: "clone-class-default", name: "clone without storageClassName (the default class, same driver)", gates: off,
		setup: src(claimOpts{}), claim: clone(claimOpts{class: str(noClass)}, pvcKind, nil, "src"),
		without: want{result: boundData}, with: want{result: boundData}},
	{id: "clone-src-class-empty", name: `clone of a source with storageClassName "" bound to the driver's volume`, rule: "storage-class", gates: off,
		setup: seeded(str(""), "1Gi", "1Gi"), claim: clone(claimOpts{}, pvcKind, nil, "src"),
		without: want{result: boundData}, with: want{result: boundData}},
	{id: "clone-other-driver", name: "clone into a class of another driver", rule: "driver-mismatch", gates: off,
		setup: src(claimOpts{}), claim: clone(claimOpts{class: str(classOther)}, pvcKind, nil, "src"),
		without: want{result: pending, event: external}, with: want{result: denied, rule: "driver-mismatch"}},
	{id: "clone-foreign", name: "clone of a source whose volume is another driver's", rule: "driver-mismatch", gates: off,
		setup: foreign, claim: clone(claimOpts{}, pvcKind, nil, "src"),
		without: want{result: pending, event: ready}, with: want{result: denied, rule: "driver-mismatch"}},
	{id: "clone-block", name: "Block clone of a Block source", rule: "volume-mode", gates: off,
		setup: src(claimOpts{block: true}), claim: clone(claimOpts{block: true}, pvcKind, nil, "src"),
		without: want{result: boundData}, with: want{result: boundData}},
	{id: "clone-block-of-fs", name: "Block clone of a Filesystem source", rule: "volume-mode", gates: off,
		setup: src(claimOpts{}), claim: clone(claimOpts{block: true}, pvcKind, nil, "src"),
		without: want{result: pending, event: ready}, with: want{result: denied, rule: "volume-mode"}},
	{id: "clone-fs-of-block", name: "Filesystem clone of a Block source", rule: "volume-mode", gates: off,
		setup: src(claimOpts{block: true}), claim: clone(claimOpts{}, pvcKind, nil, "src"),
		without: want{result: pending, event: ready}, with: want{result: denied, rule: "volume-mode"}},
	{id: "clone-group-v1", name: "clone with apiGroup: v1", rule: "dropped-source", gates: both,
		setup: src(claimOpts{}), claim: clone(claimOpts{}, pvcKind, str("v1"), "src"),
		without: want{result: boundEmpty}, with: want{result: denied, rule: "dropped-source"}},
	{id: "clone-group-core", name: "clone with apiGroup: core", rule: "dropped-source", gates: off,
		setup: src(claimOpts{}), claim: clone(claimOpts{}, pvcKind, str("core"), "src"),
		without: want{result: boundEmpty}, with: want{result: denied, rule: "dropped-source"}},
	{id: "clone-kind-case", name: "clone with kind: persistentvolumeclaim", rule: "dropped-source", gates: both,
		setup: src(claimOpts{}), claim: clone(claimOpts{}, "persistentvolumeclaim", nil, "src"),
		without: want{result: boundEmpty}, with: want{result: denied, rule: "dropped-source"}},
	{id: "clone-own-ns", name: "clone through dataSourceRef naming the claim's own namespace", rule: "cross-namespace-source", gates: both,
		setup: src(claimOpts{}), claim: ref(claimOpts{}, pvcKind, nil, "src", "own"),
		without: want{result: boundEmpty}, with: want{result: boundData, warning: "removed"},
		withoutGateOn: &want{result: boundData}},
	{id: "clone-cross-ns", name: "clone from another namespace (no ReferenceGrant)", rule: "cross-namespace-source", gates: both,
		setup: otherNamespaceSource, claim: ref(claimOpts{}, pvcKind, nil, "src", "other"),
		without: want{result: boundEmpty}, with: want{result: denied, rule: "cross-namespace-source"},
		withoutGateOn: &want{result: pending, event: ready}},
	{id: "clone-cross-ns-granted", name: "clone from another namespace that a ReferenceGrant allows", rule: "cross-namespace-source", gates: []string{"on"},
		setup: steps(otherNamespaceSource, grant), claim: ref(claimOpts{}, pvcKind, nil, "src", "other"),
		without: want{result: boundData}, with: want{result: denied, rule: "cross-namespace-source"},
		byPolicy: "denied by the default policy; admitted with `crossNamespace.allowWithReferenceGrant: true`"},

	// Restores.
	{id: "restore", name: "restore, same size as the snapshot", gates: off,
		setup: srcAndSnapshot(claimOpts{}, snapClass), claim: clone(claimOpts{}, snapKind, snapGroup, "snap"),
		without: want{result: boundData}, with: want{result: boundData}},
	{id: "restore-ref", name: "restore through dataSourceRef", gates: off,
		setup: srcAndSnapshot(claimOpts{}, snapClass), claim: ref(claimOpts{}, snapKind, snapGroup, "snap", ""),
		without: want{result: boundData}, with: want{result: boundData}},
	{id: "restore-bigger", name: "restore larger than the snapshot", gates: off,
		setup: srcAndSnapshot(claimOpts{}, snapClass), claim: clone(claimOpts{size: "2Gi"}, snapKind, snapGroup, "snap"),
		without: want{result: boundData}, with: want{result: boundData}},
	{id: "restore-no-group", name: "restore without apiGroup", rule: "api-group-default", gates: both,
		setup: srcAndSnapshot(claimOpts{}, snapClass), claim: clone(claimOpts{}, snapKind, nil, "snap"),
		without: want{result: boundEmpty}, with: want{result: boundData, warning: "defaulted to"}},
	{id: "restore-ref-no-group", name: "restore through dataSourceRef without apiGroup", rule: "api-group-default", gates: off,
		setup: srcAndSnapshot(claimOpts{}, snapClass), claim: ref(claimOpts{}, snapKind, nil, "snap", ""),
		without: want{result: rejected}, with: want{result: boundData, warning: "defaulted to"}},
	{id: "restore-group-version", name: "restore with apiGroup: snapshot.storage.k8s.io/v1", rule: "dropped-source", gates: both,
		setup: srcAndSnapshot(claimOpts{}, snapClass), claim: clone(claimOpts{}, snapKind, str("snapshot.storage.k8s.io/v1"), "snap"),
		without: want{result: boundEmpty}, with: want{result: denied, rule: "dropped-source"}},
	{id: "restore-kind-case", name: "restore with kind: volumesnapshot", rule: "dropped-source", gates: off,
		setup: srcAndSnapshot(claimOpts{}, snapClass), claim: clone(claimOpts{}, "volumesnapshot", snapGroup, "snap"),
		without: want{result: boundEmpty}, with: want{result: denied, rule: "dropped-source"}},
	{id: "restore-small", name: "restore smaller than the snapshot's restoreSize", rule: "restore-size", gates: off,
		setup: srcAndSnapshot(claimOpts{size: "2Gi"}, snapClass), claim: clone(claimOpts{}, snapKind, snapGroup, "snap"),
		without: want{result: pending, event: ready}, with: want{result: denied, rule: "restore-size"}},
	{id: "restore-unready", name: "restore of a snapshot not ready to use", rule: "snapshot-not-ready", gates: off,
		setup: srcAndSnapshot(claimOpts{}, snapClassSlow), claim: clone(claimOpts{}, snapKind, snapGroup, "snap"),
		without: want{result: pending, event: ready}, with: want{result: pending, rule: "snapshot-not-ready"}},
	{id: "restore-missing", name: "restore of a snapshot that does not exist", rule: "missing-source", gates: off,
		claim:   clone(claimOpts{}, snapKind, snapGroup, "snap"),
		without: want{result: pending, event: ready}, with: want{result: pending, rule: "missing-source"}},
	{id: "restore-deleting", name: "restore of a snapshot being deleted", rule: "source-deleting", gates: off,
		setup: steps(srcAndSnapshot(claimOpts{}, snapClass), deletingSnapshot), claim: clone(claimOpts{}, snapKind, snapGroup, "snap"),
		without: want{result: pending, event: ready}, with: want{result: denied, rule: "source-deleting"}},
	{id: "restore-block", name: "Block restore of a Block volume's snapshot", rule: "volume-mode", gates: off,
		setup: srcAndSnapshot(claimOpts{block: true}, snapClass), claim: clone(claimOpts{block: true}, snapKind, snapGroup, "snap"),
		without: want{result: boundData}, with: want{result: boundData}},
	{id: "restore-block-of-fs", name: "Block restore of a Filesystem volume's snapshot", rule: "volume-mode", gates: off,
		setup: srcAndSnapshot(claimOpts{}, snapClass), claim: clone(claimOpts{block: true}, snapKind, snapGroup, "snap"),
		without: want{result: pending, event: ready}, with: want{result: denied, rule: "volume-mode"}},
	{id: "restore-mode-allowed", name: "Block restore of a Filesystem volume's snapshot whose content allows a mode change", rule: "volume-mode-change", gates: off,
		setup: steps(srcAndSnapshot(claimOpts{}, snapClass), allowModeChange), claim: clone(claimOpts{block: true}, snapKind, snapGroup, "snap"),
		without: want{result: pending, event: ready}, with: want{result: pending, rule: "volume-mode-change"}},
	{id: "restore-class-empty", name: `restore with storageClassName ""`, rule: "storage-class", gates: off,
		setup: srcAndSnapshot(claimOpts{}, snapClass), claim: clone(claimOpts{class: str("")}, snapKind, snapGroup, "snap"),
		without: want{result: pending, event: noBind}, with: want{result: denied, rule: "storage-class"}},
	{id: "restore-other-driver", name: "restore into a class of another driver", rule: "driver-mismatch", gates: off,
		setup: srcAndSnapshot(claimOpts{}, snapClass), claim: clone(claimOpts{class: str(classOther)}, snapKind, snapGroup, "snap"),
		without: want{result: pending, event: external}, with: want{result: denied, rule: "driver-mismatch"}},

	// Populators and plain claims.
	{id: "populator-ref", name: "dataSourceRef to a kind no API serves", rule: "unknown-populator", gates: off,
		claim:   ref(claimOpts{}, "Widget", str("example.com"), "w", ""),
		without: want{result: pending}, with: want{result: pending, rule: "unknown-populator"}},
	{id: "populator-in-datasource", name: "a populator kind in dataSource", rule: "dropped-source", gates: both,
		claim:   clone(claimOpts{}, "Widget", str("example.com"), "w"),
		without: want{result: boundEmpty}, with: want{result: denied, rule: "dropped-source"}},
	{id: "plain", name: "a claim without a data source", gates: off,
		claim:   plain(claimOpts{}),
		without: want{result: bound}, with: want{result: bound}},
}
