package matrix

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/clonegate/clonegate/internal/testenv"
)

const (
	driver = "csi.clonegate.dev"

	classImmediate = "matrix"         // the driver, Immediate binding, expandable
	classWFFC      = "matrix-wffc"    // the driver, WaitForFirstConsumer
	classRound     = "matrix-round"   // the driver, capacity rounded up to 1Gi
	classOther     = "matrix-other"   // another driver, which nobody runs
	snapClass      = "matrix-snap"    // snapshots ready at once
	snapClassSlow  = "matrix-unready" // snapshots never ready
	node           = "matrix-node"    // the node a "scheduler" (the test) picks for WaitForFirstConsumer claims

	marker = "clonegate-matrix.txt" // the file written into every source volume

	// claimName is the claim under test in every row.
	claimName = "clone"
)

var snapshotGVK = schema.GroupVersionKind{Group: "snapshot.storage.k8s.io", Version: "v1", Kind: "VolumeSnapshot"}

// cluster is a running pipeline as the matrix uses it.
type cluster struct {
	kubectl func(stdin string, args ...string) testenv.Result
	client  client.Client
	log     func() string // clonegate's log so far
	gate    string        // "off" or "on"
}

// scenario is one row run once: its namespace in one pipeline.
type scenario struct {
	ctx context.Context
	c   *cluster
	ns  string
}

func (s *scenario) create(obj client.Object) error {
	if obj.GetNamespace() == "" && obj.GetObjectKind().GroupVersionKind().Kind != "PersistentVolume" {
		obj.SetNamespace(s.ns)
	}
	if err := s.c.client.Create(s.ctx, obj); err != nil {
		return fmt.Errorf("creating %s %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
	}
	return nil
}

// claimOpts shape a claim.
type claimOpts struct {
	size  string
	class *string // nil: no storageClassName
	block bool
}

func str(s string) *string { return &s }

func claim(name string, o claimOpts) *corev1.PersistentVolumeClaim {
	if o.size == "" {
		o.size = "1Gi"
	}
	c := &corev1.PersistentVolumeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(o.size)}},
			StorageClassName: o.class,
		},
	}
	if o.block {
		m := corev1.PersistentVolumeBlock
		c.Spec.VolumeMode = &m
	}
	return c
}

// source creates a claim, waits until it is Bound and writes the marker into its volume.
func (s *scenario) source(name string, o claimOpts) error {
	if o.class == nil {
		o.class = str(classImmediate)
	}
	if err := s.create(claim(name, o)); err != nil {
		return err
	}
	if *o.class == classWFFC {
		if err := s.schedule(name); err != nil {
			return err
		}
	}
	return s.fill(name)
}

// fill waits for claim name to be Bound and writes the marker into its volume.
func (s *scenario) fill(name string) error {
	dir, err := s.boundPath(name, time.Minute)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, marker), []byte(s.ns+"/"+name), 0o644)
}

// boundPath waits for claim name to be Bound and returns its volume's directory.
func (s *scenario) boundPath(name string, timeout time.Duration) (string, error) {
	var pvc corev1.PersistentVolumeClaim
	err := wait.PollUntilContextTimeout(s.ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := s.c.client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: name}, &pvc); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return pvc.Status.Phase == corev1.ClaimBound, nil
	})
	if err != nil {
		return "", fmt.Errorf("claim %s/%s not Bound: %w (%s)", s.ns, name, err, s.events(name))
	}
	return s.volumePath(pvc.Spec.VolumeName)
}

func (s *scenario) volumePath(pvName string) (string, error) {
	var pv corev1.PersistentVolume
	if err := s.c.client.Get(s.ctx, client.ObjectKey{Name: pvName}, &pv); err != nil {
		return "", err
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.VolumeAttributes["path"] == "" {
		return "", fmt.Errorf("volume %s has no spec.csi.volumeAttributes.path", pvName)
	}
	return pv.Spec.CSI.VolumeAttributes["path"], nil
}

// schedule does what the scheduler does for a WaitForFirstConsumer claim once a Pod using it is
// placed: it names the node. (No scheduler or kubelet runs here.)
func (s *scenario) schedule(name string) error {
	r := s.c.kubectl("", "annotate", "-n", s.ns, "pvc", name, "volume.kubernetes.io/selected-node="+node)
	if r.Code != 0 {
		return fmt.Errorf("annotating %s: %s", name, r.Output())
	}
	return nil
}

// snapshot creates a VolumeSnapshot of claim src in class and waits until it is ready (or, for
// the never-ready class, until its content exists).
func (s *scenario) snapshot(name, src, class string) error {
	snap := &unstructured.Unstructured{}
	snap.SetGroupVersionKind(snapshotGVK)
	snap.SetName(name)
	snap.SetNamespace(s.ns)
	snap.Object["spec"] = map[string]any{
		"volumeSnapshotClassName": class,
		"source":                  map[string]any{"persistentVolumeClaimName": src},
	}
	if err := s.create(snap); err != nil {
		return err
	}
	err := wait.PollUntilContextTimeout(s.ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(snapshotGVK)
		if err := s.c.client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: name}, got); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		if class == snapClassSlow {
			content, _, _ := unstructured.NestedString(got.Object, "status", "boundVolumeSnapshotContentName")
			return content != "", nil
		}
		ready, _, _ := unstructured.NestedBool(got.Object, "status", "readyToUse")
		return ready, nil
	})
	if err != nil {
		return fmt.Errorf("snapshot %s/%s not ready: %w", s.ns, name, err)
	}
	return nil
}

// deleting puts a finalizer of the test's on an object and deletes it, so it stays "being deleted".
func (s *scenario) deleting(obj client.Object) error {
	// The controllers update the object too: read it again on a conflict.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := s.c.client.Get(s.ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		obj.SetFinalizers(append(obj.GetFinalizers(), "matrix.clonegate.dev/hold"))
		return s.c.client.Update(s.ctx, obj)
	})
	if err != nil {
		return err
	}
	return s.c.client.Delete(s.ctx, obj)
}

// staticVolume creates a PersistentVolume bound in advance to claim name, the way an administrator
// hands out an existing volume: driver and handle say which volume it is.
func (s *scenario) staticVolume(pvName, claimName, class, size, drv, handle, path string) error {
	pv := &corev1.PersistentVolume{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolume"},
		ObjectMeta: metav1.ObjectMeta{Name: s.ns + "-" + pvName},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:         corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			ClaimRef:         &corev1.ObjectReference{Namespace: s.ns, Name: claimName},
			StorageClassName: class,
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: drv, VolumeHandle: handle, VolumeAttributes: map[string]string{"path": path},
			}},
		},
	}
	return s.create(pv)
}

// handle returns the CSI volume handle and directory of claim name's volume.
func (s *scenario) handle(name string) (handle, path string, err error) {
	var pvc corev1.PersistentVolumeClaim
	if err := s.c.client.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: name}, &pvc); err != nil {
		return "", "", err
	}
	var pv corev1.PersistentVolume
	if err := s.c.client.Get(s.ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, &pv); err != nil {
		return "", "", err
	}
	return pv.Spec.CSI.VolumeHandle, pv.Spec.CSI.VolumeAttributes["path"], nil
}

// apply creates the claim under test with kubectl, as a person would, and returns what kubectl
// said: created, with warnings, or refused.
func (s *scenario) apply(pvc *corev1.PersistentVolumeClaim) (outcome, error) {
	pvc.Namespace = s.ns
	doc, err := yaml.Marshal(pvc)
	if err != nil {
		return outcome{}, err
	}
	r := s.c.kubectl(string(doc), "create", "-f", "-")
	var o outcome
	for _, line := range strings.Split(r.Stderr, "\n") {
		if w, ok := strings.CutPrefix(line, "Warning: "); ok {
			o.warnings = append(o.warnings, w)
		}
	}
	if r.Code != 0 {
		o.message = strings.TrimSpace(r.Stderr)
		o.result = rejected
		if strings.Contains(r.Stderr, `admission webhook "`) && strings.Contains(r.Stderr, `.clonegate.dev"`) {
			o.result = denied
		}
	}
	return o, nil
}

// settle waits until the claim under test reaches what the row expects (Bound, or Pending with
// the expected event) or the deadline passes, and says what became of it.
func (s *scenario) settle(o *outcome, w want, hadSource bool, timeout time.Duration) error {
	var pvc corev1.PersistentVolumeClaim
	get := func(ctx context.Context) error {
		return s.c.client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: claimName}, &pvc)
	}
	_ = wait.PollUntilContextTimeout(s.ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if get(ctx) != nil {
			return false, nil // transient, or the deadline: the final read below decides
		}
		if pvc.Status.Phase == corev1.ClaimBound {
			return true, nil
		}
		e := s.lastEvent(claimName)
		return w.result == pending && w.event != "" && strings.Contains(e, w.event), nil
	})
	if err := get(s.ctx); err != nil {
		return err
	}
	if pvc.Status.Phase != corev1.ClaimBound {
		o.result = pending
		o.event = s.lastEvent(claimName)
		return nil
	}
	o.event = ""
	if !hadSource {
		o.result = bound
		return nil
	}
	dir, err := s.volumePath(pvc.Spec.VolumeName)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(dir, marker))
	switch {
	case err == nil && strings.HasPrefix(string(data), s.ns): // its own source, or its second namespace's
		o.result = boundData
	case err == nil || errors.Is(err, os.ErrNotExist):
		o.result = boundEmpty
	default:
		return err
	}
	return nil
}

// lastEvent is the newest event about claim name that says something ("Reason: message"); the
// routine Provisioning and ExternalProvisioning notes count only when nothing else was said.
func (s *scenario) lastEvent(name string) string {
	var events corev1.EventList
	if err := s.c.client.List(s.ctx, &events, client.InNamespace(s.ns)); err != nil {
		return ""
	}
	var mine []corev1.Event
	for _, e := range events.Items {
		if e.InvolvedObject.Name == name && e.InvolvedObject.Kind == "PersistentVolumeClaim" {
			mine = append(mine, e)
		}
	}
	sort.SliceStable(mine, func(i, j int) bool { return eventTime(mine[i]).Before(eventTime(mine[j])) })
	pick := ""
	for _, e := range mine {
		routine := e.Reason == "Provisioning" || e.Reason == "ExternalProvisioning"
		if !routine || pick == "" || strings.HasPrefix(pick, "Provisioning:") || strings.HasPrefix(pick, "ExternalProvisioning:") {
			pick = e.Reason + ": " + e.Message
		}
	}
	return pick
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

func (s *scenario) events(name string) string { return s.lastEvent(name) }

// findings reads clonegate's log for the rules it applied to requests in the row's namespace.
func (s *scenario) findings() []finding {
	var out []finding
	sc := bufio.NewScanner(strings.NewReader(s.c.log()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "finding") {
			continue
		}
		i := strings.Index(line, "{")
		if i < 0 {
			continue
		}
		var f struct {
			Msg, Rule, Action, Namespace, Name string
		}
		if json.Unmarshal([]byte(line[i:]), &f) != nil {
			continue
		}
		if f.Namespace == s.ns && f.Rule != "" && (f.Msg == "" || f.Msg == "finding") {
			out = append(out, finding{rule: f.Rule, action: f.Action})
		}
	}
	return out
}

// namespace creates the row's namespace.
func (s *scenario) namespace() error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.ns}}
	if err := s.c.client.Create(s.ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

func waitBound(s *scenario, name string) error {
	return wait.PollUntilContextTimeout(s.ctx, 200*time.Millisecond, minute, true, func(ctx context.Context) (bool, error) {
		var pvc corev1.PersistentVolumeClaim
		if err := s.c.client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: name}, &pvc); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return pvc.Status.Phase == corev1.ClaimBound, nil
	})
}

func metaName(s *scenario, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: s.ns, Name: name}
}

func snapshotObject(s *scenario, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(snapshotGVK)
	u.SetNamespace(s.ns)
	u.SetName(name)
	return u
}

// otherNamespaceSource makes the source in the row's second namespace.
func otherNamespaceSource(s *scenario) error {
	other := &scenario{ctx: s.ctx, c: s.c, ns: s.ns + "-src"}
	return other.source("src", claimOpts{})
}
