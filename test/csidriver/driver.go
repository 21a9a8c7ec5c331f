// Package csidriver is a small CSI driver for tests and `make run`: a volume is a directory under a
// state directory, a clone or a restore copies its source's directory, and a snapshot is a copy of
// the volume's directory taken when it is created. It refuses what real drivers refuse (a volume
// smaller than its source, an unknown source, the same name with other parameters), so the
// external-provisioner in front of it behaves as it does in a cluster. Only the Identity and
// Controller services do work; the Node service answers just enough for csi-sanity's cleanup.
//
// The volume's directory is published in the volume context as "path", so the external-provisioner
// writes it into the PersistentVolume as spec.csi.volumeAttributes.path.
package csidriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/apimachinery/pkg/api/resource"
)

const (
	// DefaultName is the driver's name: the StorageClass provisioner and VolumeSnapshotClass driver.
	DefaultName = "csi.clonegate.dev"

	// VolumeContextPath is the volume context key (PV spec.csi.volumeAttributes) holding the
	// volume's directory.
	VolumeContextPath = "path"

	// ParamRoundUp is a StorageClass parameter: round every volume's capacity up to a multiple of
	// this quantity (e.g. "1Gi"), as cloud drivers do, so a claim's status.capacity can exceed
	// its request.
	ParamRoundUp = "roundUp"

	// ParamReadyToUse is a VolumeSnapshotClass parameter: "false" keeps every snapshot of the class
	// not ready to use, like a snapshot still being uploaded.
	ParamReadyToUse = "readyToUse"

	// defaultCapacity is the capacity of a volume created without a capacity range.
	defaultCapacity = 1 << 30
)

// Config configures a Driver.
type Config struct {
	Name     string // DefaultName when empty
	Version  string // vendor version reported by GetPluginInfo
	NodeID   string // reported by NodeGetInfo
	StateDir string // volumes/, snapshots/ and state.json live here
}

type volume struct {
	ID               string            `json:"id"`
	Name             string            `json:"name"`
	CapacityBytes    int64             `json:"capacityBytes"`
	Block            bool              `json:"block"`
	SourceVolumeID   string            `json:"sourceVolumeID,omitempty"`
	SourceSnapshotID string            `json:"sourceSnapshotID,omitempty"`
	Parameters       map[string]string `json:"parameters,omitempty"`
}

type snapshot struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	SourceVolumeID string    `json:"sourceVolumeID"`
	SizeBytes      int64     `json:"sizeBytes"`
	Block          bool      `json:"block"`
	CreatedAt      time.Time `json:"createdAt"`
	ReadyToUse     bool      `json:"readyToUse"`
}

type state struct {
	Volumes   map[string]*volume   `json:"volumes"`
	Snapshots map[string]*snapshot `json:"snapshots"`
}

// Driver implements the CSI Identity, Controller and Node services.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer

	cfg Config

	// mu guards st and the directories; copies are small, so one lock keeps it simple.
	mu sync.Mutex
	st state
}

// New returns a Driver over cfg.StateDir, loading the volumes and snapshots a previous run left.
func New(cfg Config) (*Driver, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "node-1"
	}
	if cfg.StateDir == "" {
		return nil, errors.New("csidriver: a state directory is required")
	}
	for _, dir := range []string{"volumes", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, dir), 0o755); err != nil {
			return nil, err
		}
	}
	d := &Driver{cfg: cfg, st: state{Volumes: map[string]*volume{}, Snapshots: map[string]*snapshot{}}}
	data, err := os.ReadFile(d.statePath())
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(data, &d.st); err != nil {
			return nil, fmt.Errorf("csidriver: %s: %w", d.statePath(), err)
		}
	}
	return d, nil
}

func (d *Driver) statePath() string { return filepath.Join(d.cfg.StateDir, "state.json") }

// VolumePath is the directory holding volume id's data.
func (d *Driver) VolumePath(id string) string {
	return filepath.Join(d.cfg.StateDir, "volumes", id)
}

func (d *Driver) snapshotPath(id string) string {
	return filepath.Join(d.cfg.StateDir, "snapshots", id)
}

// save writes the state atomically, so a restarted driver knows its volumes. Call with mu held.
func (d *Driver) save() error {
	data, err := json.MarshalIndent(d.st, "", "  ")
	if err != nil {
		return err
	}
	tmp := d.statePath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return status.Errorf(codes.Internal, "saving state: %v", err)
	}
	if err := os.Rename(tmp, d.statePath()); err != nil {
		return status.Errorf(codes.Internal, "saving state: %v", err)
	}
	return nil
}

// Identity service.

func (d *Driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: d.cfg.Name, VendorVersion: d.cfg.Version}, nil
}

func (d *Driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{{
		Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{
			Type: csi.PluginCapability_Service_CONTROLLER_SERVICE,
		}},
	}}}, nil
}

func (d *Driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}

// Controller service.

func (d *Driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, c := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: c}},
		})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// accessBlock says whether caps ask for a block volume; mount and block together are refused.
func accessBlock(caps []*csi.VolumeCapability) (bool, error) {
	if len(caps) == 0 {
		return false, status.Error(codes.InvalidArgument, "volume capabilities missing")
	}
	var block, mount bool
	for _, c := range caps {
		switch {
		case c.GetBlock() != nil:
			block = true
		case c.GetMount() != nil:
			mount = true
		default:
			return false, status.Error(codes.InvalidArgument, "a volume capability needs an access type, block or mount")
		}
		if c.GetAccessMode() == nil {
			return false, status.Error(codes.InvalidArgument, "a volume capability needs an access mode")
		}
	}
	if block && mount {
		return false, status.Error(codes.InvalidArgument, "block and mount access types cannot be mixed")
	}
	return block, nil
}

func modeName(block bool) string {
	if block {
		return "block"
	}
	return "filesystem"
}

// capacity picks the volume's size from the request: the required bytes, else the limit, else the
// source's size, else a default; rounded up when the class asks for it.
func capacity(r *csi.CapacityRange, sourceBytes int64, params map[string]string) (int64, error) {
	required, limit := r.GetRequiredBytes(), r.GetLimitBytes()
	if required < 0 || limit < 0 {
		return 0, status.Error(codes.InvalidArgument, "capacity cannot be negative")
	}
	if limit > 0 && required > limit {
		return 0, status.Errorf(codes.InvalidArgument, "required bytes %d exceed limit bytes %d", required, limit)
	}
	size := required
	switch {
	case size > 0:
	case sourceBytes > 0:
		size = sourceBytes
	case limit > 0:
		size = limit
	default:
		size = defaultCapacity
	}
	if s, ok := params[ParamRoundUp]; ok {
		q, err := resource.ParseQuantity(s)
		if err != nil || q.Value() <= 0 {
			return 0, status.Errorf(codes.InvalidArgument, "parameter %s=%q: want a positive quantity such as 1Gi", ParamRoundUp, s)
		}
		unit := q.Value()
		size = (size + unit - 1) / unit * unit
	}
	if limit > 0 && size > limit {
		return 0, status.Errorf(codes.OutOfRange, "capacity %d exceeds limit bytes %d", size, limit)
	}
	return size, nil
}

func (d *Driver) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume name missing")
	}
	block, err := accessBlock(req.GetVolumeCapabilities())
	if err != nil {
		return nil, err
	}
	srcVolID := req.GetVolumeContentSource().GetVolume().GetVolumeId()
	srcSnapID := req.GetVolumeContentSource().GetSnapshot().GetSnapshotId()
	if req.GetVolumeContentSource() != nil && srcVolID == "" && srcSnapID == "" {
		return nil, status.Error(codes.InvalidArgument, "volume content source names neither a volume nor a snapshot")
	}

	d.mu.Lock()
	defer d.mu.Unlock()

	if ex := d.volumeByName(req.GetName()); ex != nil {
		if err := sameVolume(ex, req, block, srcVolID, srcSnapID); err != nil {
			return nil, err
		}
		return d.createResponse(ex, req.GetVolumeContentSource()), nil
	}

	// The source: its directory, size and mode.
	var srcDir string
	var srcBytes int64
	var srcBlock bool
	switch {
	case srcVolID != "":
		src, ok := d.st.Volumes[srcVolID]
		if !ok {
			return nil, status.Errorf(codes.NotFound, "source volume %q not found", srcVolID)
		}
		srcDir, srcBytes, srcBlock = d.VolumePath(src.ID), src.CapacityBytes, src.Block
	case srcSnapID != "":
		src, ok := d.st.Snapshots[srcSnapID]
		if !ok {
			return nil, status.Errorf(codes.NotFound, "source snapshot %q not found", srcSnapID)
		}
		if !src.ReadyToUse {
			return nil, status.Errorf(codes.FailedPrecondition, "source snapshot %q is not ready to use", srcSnapID)
		}
		srcDir, srcBytes, srcBlock = d.snapshotPath(src.ID), src.SizeBytes, src.Block
	}
	size, err := capacity(req.GetCapacityRange(), srcBytes, req.GetParameters())
	if err != nil {
		return nil, err
	}
	if srcDir != "" {
		if size < srcBytes {
			return nil, status.Errorf(codes.OutOfRange, "requested capacity %d is less than the source's size %d", size, srcBytes)
		}
		if block != srcBlock {
			return nil, status.Errorf(codes.InvalidArgument, "the source is a %s volume, the request asks for %s", modeName(srcBlock), modeName(block))
		}
	}

	v := &volume{
		ID: uuid.NewString(), Name: req.GetName(), CapacityBytes: size, Block: block,
		SourceVolumeID: srcVolID, SourceSnapshotID: srcSnapID, Parameters: req.GetParameters(),
	}
	if err := fill(d.VolumePath(v.ID), srcDir); err != nil {
		return nil, err
	}
	d.st.Volumes[v.ID] = v
	if err := d.save(); err != nil {
		delete(d.st.Volumes, v.ID)
		_ = os.RemoveAll(d.VolumePath(v.ID))
		return nil, err
	}
	return d.createResponse(v, req.GetVolumeContentSource()), nil
}

// sameVolume refuses a repeated CreateVolume that asks for something else than ex.
func sameVolume(ex *volume, req *csi.CreateVolumeRequest, block bool, srcVolID, srcSnapID string) error {
	required, limit := req.GetCapacityRange().GetRequiredBytes(), req.GetCapacityRange().GetLimitBytes()
	var diff string
	switch {
	case ex.CapacityBytes < required || (limit > 0 && ex.CapacityBytes > limit):
		diff = fmt.Sprintf("capacity %d, not within [%d, %d]", ex.CapacityBytes, required, limit)
	case ex.Block != block:
		diff = "volume mode " + modeName(ex.Block)
	case ex.SourceVolumeID != srcVolID || ex.SourceSnapshotID != srcSnapID:
		diff = "another content source"
	case !equalParams(ex.Parameters, req.GetParameters()):
		diff = "other parameters"
	default:
		return nil
	}
	return status.Errorf(codes.AlreadyExists, "volume %q already exists with %s", ex.Name, diff)
}

func equalParams(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (d *Driver) createResponse(v *volume, src *csi.VolumeContentSource) *csi.CreateVolumeResponse {
	return &csi.CreateVolumeResponse{Volume: &csi.Volume{
		VolumeId:      v.ID,
		CapacityBytes: v.CapacityBytes,
		VolumeContext: map[string]string{VolumeContextPath: d.VolumePath(v.ID)},
		ContentSource: src,
	}}
}

func (d *Driver) volumeByName(name string) *volume {
	for _, v := range d.st.Volumes {
		if v.Name == name {
			return v
		}
	}
	return nil
}

// fill creates dir, empty or with a copy of src's content.
func fill(dir, src string) error {
	if err := os.Mkdir(dir, 0o777); err != nil {
		return status.Errorf(codes.Internal, "creating %s: %v", dir, err)
	}
	// The tests write into volumes as any user; a volume's directory is world-writable like an
	// empty filesystem's root would be to its owner.
	if err := os.Chmod(dir, 0o777); err != nil {
		return status.Errorf(codes.Internal, "creating %s: %v", dir, err)
	}
	if src == "" {
		return nil
	}
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		_ = os.RemoveAll(dir)
		return status.Errorf(codes.Internal, "copying %s to %s: %v", src, dir, err)
	}
	return nil
}

func (d *Driver) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id missing")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.st.Volumes[id]; !ok {
		return &csi.DeleteVolumeResponse{}, nil // already gone: deletion is idempotent
	}
	if err := os.RemoveAll(d.VolumePath(id)); err != nil {
		return nil, status.Errorf(codes.Internal, "deleting volume %q: %v", id, err)
	}
	delete(d.st.Volumes, id)
	return &csi.DeleteVolumeResponse{}, d.save()
}

func (d *Driver) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id missing")
	}
	block, err := accessBlock(req.GetVolumeCapabilities())
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	v, ok := d.st.Volumes[req.GetVolumeId()]
	d.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %q not found", req.GetVolumeId())
	}
	if v.Block != block {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: "volume " + v.ID + " is a " + modeName(v.Block) + " volume"}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

func (d *Driver) CreateSnapshot(_ context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot name missing")
	}
	srcID := req.GetSourceVolumeId()
	if srcID == "" {
		return nil, status.Error(codes.InvalidArgument, "source volume id missing")
	}
	ready := true
	if s, ok := req.GetParameters()[ParamReadyToUse]; ok {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "parameter %s=%q: want true or false", ParamReadyToUse, s)
		}
		ready = b
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.st.Snapshots {
		if s.Name == req.GetName() {
			if s.SourceVolumeID != srcID {
				return nil, status.Errorf(codes.AlreadyExists, "snapshot %q already exists with source volume %q", s.Name, s.SourceVolumeID)
			}
			return &csi.CreateSnapshotResponse{Snapshot: s.csi()}, nil
		}
	}
	src, ok := d.st.Volumes[srcID]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "source volume %q not found", srcID)
	}
	s := &snapshot{
		ID: uuid.NewString(), Name: req.GetName(), SourceVolumeID: srcID, SizeBytes: src.CapacityBytes,
		Block: src.Block, CreatedAt: time.Now().UTC(), ReadyToUse: ready,
	}
	if err := fill(d.snapshotPath(s.ID), d.VolumePath(srcID)); err != nil {
		return nil, err
	}
	d.st.Snapshots[s.ID] = s
	if err := d.save(); err != nil {
		delete(d.st.Snapshots, s.ID)
		_ = os.RemoveAll(d.snapshotPath(s.ID))
		return nil, err
	}
	return &csi.CreateSnapshotResponse{Snapshot: s.csi()}, nil
}

func (s *snapshot) csi() *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId: s.ID, SourceVolumeId: s.SourceVolumeID, SizeBytes: s.SizeBytes,
		CreationTime: timestamppb.New(s.CreatedAt), ReadyToUse: s.ReadyToUse,
	}
}

func (d *Driver) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot id missing")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.st.Snapshots[id]; !ok {
		return &csi.DeleteSnapshotResponse{}, nil
	}
	if err := os.RemoveAll(d.snapshotPath(id)); err != nil {
		return nil, status.Errorf(codes.Internal, "deleting snapshot %q: %v", id, err)
	}
	delete(d.st.Snapshots, id)
	return &csi.DeleteSnapshotResponse{}, d.save()
}

// ListSnapshots pages through the snapshots in id order; the token is the offset of the next one.
func (d *Driver) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, status.Error(codes.InvalidArgument, "max entries cannot be negative")
	}
	d.mu.Lock()
	var all []*snapshot
	for _, s := range d.st.Snapshots {
		if (req.GetSnapshotId() == "" || s.ID == req.GetSnapshotId()) &&
			(req.GetSourceVolumeId() == "" || s.SourceVolumeID == req.GetSourceVolumeId()) {
			all = append(all, s)
		}
	}
	d.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })

	start := 0
	if t := req.GetStartingToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 || n > len(all) {
			return nil, status.Errorf(codes.Aborted, "starting token %q is not valid", t)
		}
		start = n
	}
	end := len(all)
	if m := int(req.GetMaxEntries()); m > 0 && start+m < end {
		end = start + m
	}
	resp := &csi.ListSnapshotsResponse{}
	for _, s := range all[start:end] {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: s.csi()})
	}
	if end < len(all) {
		resp.NextToken = strconv.Itoa(end)
	}
	return resp, nil
}

// Node service: no kubelet runs here, so nothing is ever staged or published; unpublishing and
// unstaging succeed so that cleanup code (csi-sanity's) finishes.

func (d *Driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: d.cfg.NodeID}, nil
}

func (d *Driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{}, nil
}

func (d *Driver) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" || req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and target path are required")
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

func (d *Driver) NodeUnstageVolume(_ context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	if req.GetVolumeId() == "" || req.GetStagingTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and staging target path are required")
	}
	return &csi.NodeUnstageVolumeResponse{}, nil
}
