// Command image builds clonegate's container image without a Docker daemon:
// the static binary on an empty base, as an OCI image layout in a tar file
// (an "oci-archive"), with go-containerregistry. `make image` runs it.
//
// The image is what the Dockerfile's is, minus the distroless base: /clonegate
// as entrypoint, `serve` as command, user 65532 (distroless's nonroot), OCI
// labels; besides the binary only /etc/passwd, /etc/group and /tmp, so no
// shell and nothing else to run. Every timestamp is --created, so the same
// binary gives the same image digest.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// nonroot is distroless's unprivileged user and group.
const nonroot = 65532

type options struct {
	binary, out, name, version, source, revision, licenses, arch string
	created                                                      int64
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "", "the clonegate binary: static, built for linux/--arch")
	flag.StringVar(&o.out, "out", "clonegate.oci.tar", "the OCI image layout tar file to write")
	flag.StringVar(&o.name, "name", "clonegate:dev", "image name, kept as the image's ref.name annotation (what podman or docker load calls it)")
	flag.StringVar(&o.version, "version", "dev", "label org.opencontainers.image.version")
	flag.StringVar(&o.source, "source", "https://github.com/clonegate/clonegate", "label org.opencontainers.image.source")
	flag.StringVar(&o.revision, "revision", "", "label org.opencontainers.image.revision (the git commit)")
	flag.StringVar(&o.licenses, "licenses", "NOASSERTION", "label org.opencontainers.image.licenses (an SPDX expression)")
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "the binary's architecture")
	flag.Int64Var(&o.created, "created", 0, "creation time of the image and its files, in Unix seconds (the commit's time makes builds reproducible)")
	flag.Parse()
	if o.binary == "" {
		fmt.Fprintln(os.Stderr, "image: --binary is required")
		os.Exit(2)
	}
	digest, err := build(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%s: %s %s (linux/%s)\n", o.out, o.name, digest, o.arch)
}

func build(o options) (v1.Hash, error) {
	created := time.Unix(o.created, 0).UTC()
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return v1.Hash{}, err
	}
	files, err := rootfs(bin, created)
	if err != nil {
		return v1.Hash{}, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(files)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return v1.Hash{}, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: created}, CreatedBy: "make image (hack/image): /clonegate, /etc/passwd, /etc/group, /tmp",
	}})
	if err != nil {
		return v1.Hash{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return v1.Hash{}, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: created}
	cf.OS, cf.Architecture = "linux", o.arch
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", nonroot, nonroot),
		Entrypoint: []string{"/clonegate"},
		Cmd:        []string{"serve"},
		WorkingDir: "/",
		Labels: map[string]string{
			"org.opencontainers.image.title":       "clonegate",
			"org.opencontainers.image.description": "Admission webhook that guards PersistentVolumeClaim cloning",
			"org.opencontainers.image.version":     o.version,
			"org.opencontainers.image.source":      o.source,
			"org.opencontainers.image.revision":    o.revision,
			"org.opencontainers.image.licenses":    o.licenses,
			"org.opencontainers.image.created":     created.Format(time.RFC3339),
		},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return v1.Hash{}, err
	}
	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}

	dir, err := os.MkdirTemp("", "clonegate-image-")
	if err != nil {
		return v1.Hash{}, err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": o.name,
		"io.containerd.image.name":          o.name, // docker load (containerd store) names the image by it
	})); err != nil {
		return v1.Hash{}, err
	}
	return digest, tarDir(dir, o.out, created)
}

// rootfs is the image's one layer: the binary, the nonroot user, and /tmp.
func rootfs(bin []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries := []struct {
		name string
		mode int64
		data []byte
	}{
		{"etc/", 0o755, nil},
		{"etc/group", 0o644, []byte("root:x:0:\nnonroot:x:65532:\n")},
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{"tmp/", 0o1777, nil},
		{"clonegate", 0o755, bin},
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.data)), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if e.data == nil {
			h.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), tw.Close()
}

// tarDir writes the layout directory as a tar file, in a fixed order with
// fixed times, so equal images give equal files.
func tarDir(dir, out string, mtime time.Time) error {
	var paths []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && path != dir {
			paths = append(paths, path)
		}
		return err
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, path := range paths {
		info, err := os.Stat(path)
		if err != nil {
			return errors.Join(err, f.Close())
		}
		rel, _ := filepath.Rel(dir, path)
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: mtime, Typeflag: tar.TypeReg, Size: info.Size(), Format: tar.FormatPAX}
		if info.IsDir() {
			h.Name, h.Mode, h.Typeflag, h.Size = h.Name+"/", 0o755, tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return errors.Join(err, f.Close())
		}
		if !info.IsDir() {
			data, err := os.ReadFile(path)
			if err == nil {
				_, err = tw.Write(data)
			}
			if err != nil {
				return errors.Join(err, f.Close())
			}
		}
	}
	return errors.Join(tw.Close(), f.Close())
}
