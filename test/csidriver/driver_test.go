package csidriver

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const gi = int64(1 << 30)

var (
	mountCap = &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	blockCap = &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
)

func newDriver(t *testing.T) *Driver {
	t.Helper()
	d, err := New(Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func volReq(name string, bytes int64, c *csi.VolumeCapability) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{
		Name:               name,
		CapacityRange:      &csi.CapacityRange{RequiredBytes: bytes},
		VolumeCapabilities: []*csi.VolumeCapability{c},
	}
}

func fromVolume(r *csi.CreateVolumeRequest, id string) *csi.CreateVolumeRequest {
	r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
		Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id}}}
	return r
}

func fromSnapshot(r *csi.CreateVolumeRequest, id string) *csi.CreateVolumeRequest {
	r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: id}}}
	return r
}

func withParams(r *csi.CreateVolumeRequest, p map[string]string) *csi.CreateVolumeRequest {
	r.Parameters = p
	return r
}

func mustCreate(t *testing.T, d *Driver, r *csi.CreateVolumeRequest) *csi.Volume {
	t.Helper()
	resp, err := d.CreateVolume(context.Background(), r)
	if err != nil {
		t.Fatalf("CreateVolume %q: %v", r.GetName(), err)
	}
	return resp.GetVolume()
}

func mustSnapshot(t *testing.T, d *Driver, name, volID string, params map[string]string) *csi.Snapshot {
	t.Helper()
	resp, err := d.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: volID, Parameters: params})
	if err != nil {
		t.Fatalf("CreateSnapshot %q: %v", name, err)
	}
	return resp.GetSnapshot()
}

// TestCreateVolumeRefusals: what the driver refuses, with the code a real driver answers.
func TestCreateVolumeRefusals(t *testing.T) {
	d := newDriver(t)
	src := mustCreate(t, d, volReq("src", 5*gi, mountCap))
	blockSrc := mustCreate(t, d, volReq("block-src", 5*gi, blockCap))
	rounded := mustCreate(t, d, withParams(volReq("rounded", 3*gi/2, mountCap), map[string]string{ParamRoundUp: "1Gi"}))
	ready := mustSnapshot(t, d, "ready", src.GetVolumeId(), nil)
	notReady := mustSnapshot(t, d, "not-ready", src.GetVolumeId(), map[string]string{ParamReadyToUse: "false"})

	mixed := volReq("mixed", gi, mountCap)
	mixed.VolumeCapabilities = append(mixed.VolumeCapabilities, blockCap)
	noType := volReq("no-type", gi, &csi.VolumeCapability{AccessMode: mountCap.AccessMode})
	noMode := volReq("no-mode", gi, &csi.VolumeCapability{AccessType: mountCap.AccessType})
	overLimit := volReq("over-limit", 2*gi, mountCap)
	overLimit.CapacityRange.LimitBytes = gi
	roundedOverLimit := withParams(volReq("rounded-over-limit", 3*gi/2, mountCap), map[string]string{ParamRoundUp: "1Gi"})
	roundedOverLimit.CapacityRange.LimitBytes = 3 * gi / 2
	emptySource := volReq("empty-source", gi, mountCap)
	emptySource.VolumeContentSource = &csi.VolumeContentSource{}

	tests := []struct {
		name string
		req  *csi.CreateVolumeRequest
		want codes.Code
	}{
		{"refuses a request without a name", volReq("", gi, mountCap), codes.InvalidArgument},
		{"refuses a request without capabilities", &csi.CreateVolumeRequest{Name: "no-caps"}, codes.InvalidArgument},
		{"refuses block and mount together", mixed, codes.InvalidArgument},
		{"refuses a capability without an access type", noType, codes.InvalidArgument},
		{"refuses a capability without an access mode", noMode, codes.InvalidArgument},
		{"refuses a negative capacity", volReq("negative", -1, mountCap), codes.InvalidArgument},
		{"refuses required bytes above the limit", overLimit, codes.InvalidArgument},
		{"refuses a rounded capacity above the limit", roundedOverLimit, codes.OutOfRange},
		{"refuses a bad roundUp parameter", withParams(volReq("bad-round", gi, mountCap), map[string]string{ParamRoundUp: "lots"}), codes.InvalidArgument},
		{"refuses a content source naming nothing", emptySource, codes.InvalidArgument},
		{"refuses a clone smaller than its source", fromVolume(volReq("small-clone", gi, mountCap), src.GetVolumeId()), codes.OutOfRange},
		{"refuses a clone smaller than its rounded-up source", fromVolume(volReq("small-of-rounded", 3*gi/2, mountCap), rounded.GetVolumeId()), codes.OutOfRange},
		{"refuses a clone of an unknown volume", fromVolume(volReq("clone-unknown", 5*gi, mountCap), "no-such-volume"), codes.NotFound},
		{"refuses a block clone of a filesystem volume", fromVolume(volReq("block-clone", 5*gi, blockCap), src.GetVolumeId()), codes.InvalidArgument},
		{"refuses a filesystem clone of a block volume", fromVolume(volReq("fs-clone", 5*gi, mountCap), blockSrc.GetVolumeId()), codes.InvalidArgument},
		{"refuses a restore smaller than its snapshot", fromSnapshot(volReq("small-restore", gi, mountCap), ready.GetSnapshotId()), codes.OutOfRange},
		{"refuses a restore of an unknown snapshot", fromSnapshot(volReq("restore-unknown", 5*gi, mountCap), "no-such-snapshot"), codes.NotFound},
		{"refuses a restore of a snapshot not ready to use", fromSnapshot(volReq("restore-not-ready", 5*gi, mountCap), notReady.GetSnapshotId()), codes.FailedPrecondition},
		{"refuses a block restore of a filesystem snapshot", fromSnapshot(volReq("block-restore", 5*gi, blockCap), ready.GetSnapshotId()), codes.InvalidArgument},
		{"refuses the name of an existing volume with a larger capacity", volReq("src", 6*gi, mountCap), codes.AlreadyExists},
		{"refuses the name of an existing volume in the other mode", volReq("src", 5*gi, blockCap), codes.AlreadyExists},
		{"refuses the name of an existing volume with other parameters", withParams(volReq("src", 5*gi, mountCap), map[string]string{"x": "y"}), codes.AlreadyExists},
		{"refuses the name of an existing volume with a content source", fromVolume(volReq("src", 5*gi, mountCap), blockSrc.GetVolumeId()), codes.AlreadyExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.CreateVolume(context.Background(), tt.req)
			if got := status.Code(err); got != tt.want {
				t.Fatalf("code %s (%v), want %s", got, err, tt.want)
			}
			if d.volumeByName(tt.req.GetName()) != nil && tt.req.GetName() != "src" {
				t.Errorf("a refused request left volume %q behind", tt.req.GetName())
			}
		})
	}
}

func TestCreateVolumeIsIdempotent(t *testing.T) {
	d := newDriver(t)
	first := mustCreate(t, d, volReq("v", 2*gi, mountCap))
	again := mustCreate(t, d, volReq("v", 2*gi, mountCap))
	if first.GetVolumeId() != again.GetVolumeId() {
		t.Errorf("second CreateVolume made volume %q, want %q again", again.GetVolumeId(), first.GetVolumeId())
	}
	// A smaller request for the same name is satisfied by the existing volume.
	smaller := mustCreate(t, d, volReq("v", gi, mountCap))
	if smaller.GetVolumeId() != first.GetVolumeId() {
		t.Errorf("smaller request made volume %q, want %q", smaller.GetVolumeId(), first.GetVolumeId())
	}
}

func TestCapacity(t *testing.T) {
	tests := []struct {
		name     string
		r        *csi.CapacityRange
		source   int64
		params   map[string]string
		want     int64
		wantCode codes.Code
	}{
		{name: "takes the required bytes", r: &csi.CapacityRange{RequiredBytes: 5 * gi}, want: 5 * gi},
		{name: "takes the limit when nothing is required", r: &csi.CapacityRange{LimitBytes: 2 * gi}, want: 2 * gi},
		{name: "takes the source's size when nothing is required", source: 3 * gi, want: 3 * gi},
		{name: "defaults without a range", want: defaultCapacity},
		{name: "rounds up", r: &csi.CapacityRange{RequiredBytes: 3 * gi / 2}, params: map[string]string{ParamRoundUp: "1Gi"}, want: 2 * gi},
		{name: "keeps a multiple", r: &csi.CapacityRange{RequiredBytes: 2 * gi}, params: map[string]string{ParamRoundUp: "1Gi"}, want: 2 * gi},
		{name: "refuses a zero roundUp", params: map[string]string{ParamRoundUp: "0"}, wantCode: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := capacity(tt.r, tt.source, tt.params)
			if code := status.Code(err); code != tt.wantCode {
				t.Fatalf("code %s (%v), want %s", code, err, tt.wantCode)
			}
			if got != tt.want {
				t.Errorf("capacity %d, want %d", got, tt.want)
			}
		})
	}
}

// TestDataIsCopied: a clone gets the source's files, a restore gets the files the volume had when
// the snapshot was taken, and the volume context names the directory.
func TestDataIsCopied(t *testing.T) {
	d := newDriver(t)
	src := mustCreate(t, d, volReq("src", gi, mountCap))
	dir := src.GetVolumeContext()[VolumeContextPath]
	if dir != d.VolumePath(src.GetVolumeId()) {
		t.Fatalf("volume context path %q, want %q", dir, d.VolumePath(src.GetVolumeId()))
	}
	write(t, filepath.Join(dir, "data.txt"), "before")
	write(t, filepath.Join(dir, "sub", "deep.txt"), "deep")
	snap := mustSnapshot(t, d, "snap", src.GetVolumeId(), nil)
	write(t, filepath.Join(dir, "data.txt"), "after")

	clone := mustCreate(t, d, fromVolume(volReq("clone", gi, mountCap), src.GetVolumeId()))
	restore := mustCreate(t, d, fromSnapshot(volReq("restore", 2*gi, mountCap), snap.GetSnapshotId()))
	empty := mustCreate(t, d, volReq("empty", gi, mountCap))

	for _, c := range []struct {
		vol       *csi.Volume
		file      string
		want      string
		wantFound bool
	}{
		{clone, "data.txt", "after", true},
		{clone, "sub/deep.txt", "deep", true},
		{restore, "data.txt", "before", true},
		{empty, "data.txt", "", false},
	} {
		got, err := os.ReadFile(filepath.Join(c.vol.GetVolumeContext()[VolumeContextPath], c.file))
		if found := err == nil; found != c.wantFound || string(got) != c.want {
			t.Errorf("volume %q, %s: %q (found %v), want %q (found %v)", c.vol.GetVolumeId(), c.file, got, found, c.want, c.wantFound)
		}
	}
	if restore.GetCapacityBytes() != 2*gi {
		t.Errorf("restore capacity %d, want %d", restore.GetCapacityBytes(), 2*gi)
	}

	// Deleting the source keeps the snapshot and the copies.
	if _, err := d.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: src.GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("deleted volume's directory: %v, want it gone", err)
	}
	mustCreate(t, d, fromSnapshot(volReq("restore-after-delete", gi, mountCap), snap.GetSnapshotId()))
}

func TestCreateSnapshotRefusals(t *testing.T) {
	d := newDriver(t)
	a := mustCreate(t, d, volReq("a", gi, mountCap))
	b := mustCreate(t, d, volReq("b", gi, mountCap))
	first := mustSnapshot(t, d, "snap", a.GetVolumeId(), nil)
	if again := mustSnapshot(t, d, "snap", a.GetVolumeId(), nil); again.GetSnapshotId() != first.GetSnapshotId() {
		t.Errorf("second CreateSnapshot made %q, want %q again", again.GetSnapshotId(), first.GetSnapshotId())
	}
	tests := []struct {
		name string
		req  *csi.CreateSnapshotRequest
		want codes.Code
	}{
		{"refuses a request without a name", &csi.CreateSnapshotRequest{SourceVolumeId: a.GetVolumeId()}, codes.InvalidArgument},
		{"refuses a request without a source", &csi.CreateSnapshotRequest{Name: "x"}, codes.InvalidArgument},
		{"refuses an unknown source", &csi.CreateSnapshotRequest{Name: "x", SourceVolumeId: "no-such-volume"}, codes.NotFound},
		{"refuses the name of a snapshot of another volume", &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: b.GetVolumeId()}, codes.AlreadyExists},
		{"refuses a bad readyToUse parameter", &csi.CreateSnapshotRequest{Name: "y", SourceVolumeId: a.GetVolumeId(), Parameters: map[string]string{ParamReadyToUse: "soon"}}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.CreateSnapshot(context.Background(), tt.req)
			if got := status.Code(err); got != tt.want {
				t.Fatalf("code %s (%v), want %s", got, err, tt.want)
			}
		})
	}
}

// TestStateSurvivesRestart: a driver started again on the same directory knows its volumes, so
// a restarted pipeline can still clone and delete them.
func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	d, err := New(Config{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	src := mustCreate(t, d, volReq("src", gi, blockCap))
	d2, err := New(Config{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d2.CreateVolume(context.Background(), fromVolume(volReq("clone", gi, mountCap), src.GetVolumeId())); status.Code(err) != codes.InvalidArgument {
		t.Errorf("filesystem clone of the block volume after a restart: %v, want InvalidArgument", err)
	}
	mustCreate(t, d2, fromVolume(volReq("clone", gi, blockCap), src.GetVolumeId()))
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
