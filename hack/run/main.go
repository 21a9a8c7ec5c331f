// Command run is `make run`: the real cloning pipeline (internal/pipeline:
// kube-apiserver, kube-controller-manager, snapshot-controller, the project's
// CSI driver, csi-provisioner and csi-snapshotter) with clonegate registered
// from config/webhook. It applies config/samples/ with the real kubectl,
// writes a file into the source's volume, prints what kubectl said and what
// each bound claim's volume holds, and stays up until Ctrl-C so that you can
// try your own manifests.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clonegate/clonegate/internal/pipeline"
)

const (
	namespace = "default"
	// The file written into the source's volume, to be found in its clone and restore.
	dataFile    = "hello.txt"
	dataContent = "hello from the source claim\n"
	bindTimeout = 2 * time.Minute
)

func main() {
	root := flag.String("root", ".", "repository root")
	bin := flag.String("clonegate", "bin/clonegate", "the clonegate binary to serve the webhooks")
	dir := flag.String("dir", "bin/run", "where to write the kubeconfigs, the logs and the volumes")
	noWait := flag.Bool("no-wait", false, "stop after applying the samples instead of waiting for Ctrl-C")
	flag.Parse()
	if err := run(*root, *bin, *dir, !*noWait); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
}

func run(root, bin, dir string, wait bool) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	// The driver's volumes from an earlier run belong to a control plane that is gone.
	if err := os.RemoveAll(filepath.Join(dir, "volumes")); err != nil {
		return err
	}
	fmt.Println(">> starting etcd, kube-apiserver, kube-controller-manager, snapshot-controller, the CSI driver " +
		pipeline.DriverName + ", csi-provisioner, csi-snapshotter, and clonegate registered from config/webhook")
	p, err := pipeline.Start(ctx, pipeline.Options{Root: root, Dir: dir, Clonegate: bin, ClonegateArgs: []string{"--log-level", "info"}})
	if err != nil {
		return err
	}
	defer func() {
		_ = os.WriteFile(filepath.Join(dir, "clonegate.log"), p.Server.Log.Bytes(), 0o644)
		fmt.Println("\n>> stopping")
		if stopErr := p.Stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	fmt.Printf(">> default StorageClass %s and VolumeSnapshotClass %s, both for %s\n",
		pipeline.StorageClass, pipeline.SnapshotClass, pipeline.DriverName)

	samples, _ := filepath.Glob(filepath.Join(root, "config", "samples", "*.yaml"))
	sort.Strings(samples)
	for _, f := range samples {
		show(p, "apply", "-f", rel(root, f))
		switch filepath.Base(f) {
		case "01-source.yaml":
			path, err := p.WaitBound(ctx, namespace, "source", bindTimeout)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(path, dataFile), []byte(dataContent), 0o644); err != nil {
				return err
			}
			fmt.Printf(">> source is Bound; wrote %s into its volume\n", dataFile)
		case "05-snapshot.yaml":
			if err := p.WaitSnapshotReady(ctx, namespace, "source-snapshot", bindTimeout); err != nil {
				return err
			}
			fmt.Println(">> source-snapshot is ready to use")
		}
	}

	// Every claim that was admitted should bind; show what its volume holds.
	claims := &corev1.PersistentVolumeClaimList{}
	if err := p.Client.List(ctx, claims, client.InNamespace(namespace)); err != nil {
		return err
	}
	for _, c := range claims.Items {
		if _, err := p.WaitBound(ctx, namespace, c.Name, bindTimeout); err != nil {
			fmt.Printf(">> %v\n", err)
		}
	}
	show(p, "get", "pvc", "-o", "custom-columns=NAME:.metadata.name,STATUS:.status.phase,SIZE:.status.capacity.storage,SOURCE-KIND:.spec.dataSource.kind,SOURCE-GROUP:.spec.dataSource.apiGroup,SOURCE:.spec.dataSource.name")
	fmt.Printf("\n>> what each bound claim's volume holds (the directory in its PV's spec.csi.volumeAttributes.%s)\n", pipeline.PathAttribute)
	for _, c := range claims.Items {
		path, err := p.VolumePath(ctx, namespace, c.Name)
		if err != nil || path == "" {
			continue
		}
		fmt.Printf("%-8s %s\n", c.Name, holds(path))
	}

	if !wait {
		return nil
	}
	fmt.Printf("\nThe pipeline is up; logs are in %s. Try it:\n\n  export KUBECONFIG=%s\n  %s get pvc,volumesnapshot\n  %s apply -f config/samples/03-clone-too-small.yaml\n\nCtrl-C stops everything.\n",
		rel(root, dir), p.Kubeconfig, rel(root, p.KubectlBin), rel(root, p.KubectlBin))
	<-ctx.Done()
	return nil
}

// holds describes a volume's files and their contents, briefly.
func holds(dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	if len(entries) == 0 {
		return "(empty)"
	}
	var out []string
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || len(data) > 200 {
			out = append(out, e.Name())
			continue
		}
		out = append(out, fmt.Sprintf("%s: %q", e.Name(), strings.TrimSpace(string(data))))
	}
	return strings.Join(out, ", ")
}

func show(p *pipeline.Pipeline, args ...string) {
	fmt.Printf("\n$ kubectl %s\n", joinArgs(args))
	r := p.Kubectl("", args...)
	fmt.Print(r.Output())
	if r.Code != 0 {
		fmt.Printf("(exit code %d)\n", r.Code)
	}
}

// rel shortens a path under root for the person reading.
func rel(root, path string) string {
	absRoot, _ := filepath.Abs(root)
	path, _ = filepath.Abs(path)
	if r, err := filepath.Rel(absRoot, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

func joinArgs(args []string) string {
	out := ""
	for i, a := range args {
		if i > 0 {
			out += " "
		}
		if a == "" || strings.ContainsAny(a, " ,=()'\"{}") {
			a = "'" + a + "'"
		}
		out += a
	}
	return out
}
