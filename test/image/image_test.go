// Package image tests `make image`: the OCI image tarball that hack/image
// builds without a Docker daemon, read here with nothing but the standard
// library, as a registry or runtime would read it.
package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const root = "../.."

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations"`
}

func TestImage(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "clonegate")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v9.9.9-test", "-o", bin, ".")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	image := func(out string) []byte {
		t.Helper()
		cmd := exec.Command("go", "run", ".", "--binary", bin, "--out", out, "--name", "clonegate:v9.9.9-test",
			"--version", "v9.9.9-test", "--licenses", "Apache-2.0", "--revision", "abc123", "--created", "1700000000")
		cmd.Dir = filepath.Join(root, "hack", "image")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("hack/image: %v\n%s", err, out)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	archive := image(filepath.Join(dir, "clonegate.oci.tar"))

	files := untar(t, bytes.NewReader(archive))
	var ociLayout struct{ ImageLayoutVersion string }
	if decode(t, files["oci-layout"], &ociLayout); ociLayout.ImageLayoutVersion != "1.0.0" {
		t.Errorf("oci-layout: %s", files["oci-layout"])
	}
	blob := func(d descriptor) []byte {
		t.Helper()
		data, ok := files["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")]
		if !ok {
			t.Fatalf("blob %s missing", d.Digest)
		}
		if sum := sha256.Sum256(data); "sha256:"+hex.EncodeToString(sum[:]) != d.Digest || int64(len(data)) != d.Size {
			t.Fatalf("blob %s: content does not match its digest or size", d.Digest)
		}
		return data
	}
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	decode(t, files["index.json"], &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("index.json: %d manifests, want 1", len(index.Manifests))
	}
	m := index.Manifests[0]
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Annotations["org.opencontainers.image.ref.name"] != "clonegate:v9.9.9-test" {
		t.Errorf("index.json manifest: %+v", m)
	}
	var manifest struct {
		Config descriptor   `json:"config"`
		Layers []descriptor `json:"layers"`
	}
	decode(t, blob(m), &manifest)
	if manifest.Config.MediaType != "application/vnd.oci.image.config.v1+json" || len(manifest.Layers) != 1 || manifest.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Fatalf("manifest: %+v", manifest)
	}
	var config struct {
		OS, Architecture string
		Config           struct {
			User       string
			Entrypoint []string
			Cmd        []string
			Labels     map[string]string
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	decode(t, blob(manifest.Config), &config)
	if config.OS != "linux" || config.Config.User != "65532:65532" || !slices.Equal(config.Config.Entrypoint, []string{"/clonegate"}) || !slices.Equal(config.Config.Cmd, []string{"serve"}) {
		t.Errorf("config: os %q, user %q, entrypoint %q, cmd %q; want linux, 65532:65532, [/clonegate], [serve]", config.OS, config.Config.User, config.Config.Entrypoint, config.Config.Cmd)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.version":  "v9.9.9-test",
		"org.opencontainers.image.source":   "https://github.com/clonegate/clonegate",
		"org.opencontainers.image.licenses": "Apache-2.0",
		"org.opencontainers.image.revision": "abc123",
		"org.opencontainers.image.created":  "2023-11-14T22:13:20Z",
	} {
		if got := config.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}

	compressed := blob(manifest.Layers[0])
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		t.Fatal(err)
	}
	layerTar, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(layerTar); len(config.RootFS.DiffIDs) != 1 || config.RootFS.DiffIDs[0] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("rootfs.diff_ids %v do not match the layer", config.RootFS.DiffIDs)
	}
	rootfs := untar(t, bytes.NewReader(layerTar))
	var names []string
	for name := range rootfs {
		names = append(names, name)
	}
	slices.Sort(names)
	// No shell, nothing else to run: the binary and what a user needs.
	if diff := cmp.Diff([]string{"clonegate", "etc/", "etc/group", "etc/passwd", "tmp/"}, names); diff != "" {
		t.Errorf("files in the image (-want +got):\n%s", diff)
	}
	if _, ok := rootfs["bin/sh"]; ok {
		t.Error("the image has /bin/sh")
	}

	// The binary in the image is the one that runs.
	extracted := filepath.Join(dir, "extracted")
	if err := os.WriteFile(extracted, rootfs["clonegate"], 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(extracted, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "clonegate v9.9.9-test (go") {
		t.Errorf("the image's /clonegate version: %v, %q", err, out)
	}

	// A registry takes it: pushed with crane (pinned in hack/image) to crane's
	// own registry, then validated there layer by layer.
	pushAndValidate(t, dir, archive, m.Digest)

	// The same binary and time make the same bytes.
	if again := image(filepath.Join(dir, "again.oci.tar")); !bytes.Equal(archive, again) {
		t.Error("building the image twice gave different tarballs")
	}
}

func pushAndValidate(t *testing.T, dir string, archive []byte, digest string) {
	t.Helper()
	crane := filepath.Join(dir, "crane")
	build := exec.Command("go", "build", "-o", crane, "github.com/google/go-containerregistry/cmd/crane")
	build.Dir = filepath.Join(root, "hack", "image")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building crane: %v\n%s", err, out)
	}
	layoutDir := filepath.Join(dir, "layout")
	for name, data := range untar(t, bytes.NewReader(archive)) {
		path := filepath.Join(layoutDir, filepath.FromSlash(name))
		if strings.HasSuffix(name, "/") {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	registry := exec.Command(crane, "registry", "serve", "--address", "127.0.0.1:0")
	stderr, err := registry.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := registry.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = registry.Process.Kill()
		_ = registry.Wait()
	})
	// It says "serving on port N" once it listens.
	port := ""
	sc := bufio.NewScanner(stderr)
	for port == "" && sc.Scan() {
		if _, after, ok := strings.Cut(sc.Text(), "serving on port "); ok {
			port = after
		}
	}
	if port == "" {
		t.Fatalf("crane registry serve did not say its port: %v", sc.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()

	ref := "127.0.0.1:" + port + "/clonegate:v9.9.9-test"
	for _, args := range [][]string{{"push", layoutDir, ref}, {"validate", "--remote", ref}} {
		if out, err := exec.Command(crane, args...).CombinedOutput(); err != nil {
			t.Fatalf("crane %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	out, err := exec.Command(crane, "digest", ref).Output()
	if err != nil || strings.TrimSpace(string(out)) != digest {
		t.Errorf("crane digest %s: %q, %v; want %s", ref, out, err, digest)
	}
}

func untar(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(h.Name, "./")] = data
	}
}

func decode(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
}
