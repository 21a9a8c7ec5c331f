// Command run is `make run`: a local etcd and kube-apiserver with clonegate's
// webhooks registered from config/webhook and served by the clonegate binary.
// It applies config/samples/ with the real kubectl, prints what kubectl said,
// and stays up until Ctrl-C so that you can try your own manifests.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/clonegate/clonegate/internal/testenv"
)

func main() {
	root := flag.String("root", ".", "repository root")
	bin := flag.String("clonegate", "bin/clonegate", "the clonegate binary to serve the webhooks")
	dir := flag.String("dir", "bin/run", "where to write the kubeconfig and the server log")
	noWait := flag.Bool("no-wait", false, "stop after applying the samples instead of waiting for Ctrl-C")
	flag.Parse()
	if err := run(*root, *bin, *dir, !*noWait); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
}

func run(root, bin, dir string, wait bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, _ = filepath.Abs(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fmt.Println(">> starting etcd and kube-apiserver, registering config/webhook")
	cluster, err := testenv.Start(testenv.Options{Root: root, Dir: dir})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	fmt.Println(">> starting clonegate serve")
	server, err := cluster.StartServer(ctx, bin, "--log-level", "info")
	if err != nil {
		return err
	}
	defer server.Stop()

	samples, _ := filepath.Glob(filepath.Join(root, "config", "samples", "*.yaml"))
	sort.Strings(samples)
	for _, f := range samples {
		show(cluster, "apply", "-f", f)
		if filepath.Base(f) == "01-source.yaml" {
			// No controller-manager runs here to bind the claim; do what it would.
			show(cluster, "patch", "pvc", "source", "--subresource=status", "--type=merge",
				"-p", `{"status":{"phase":"Bound","capacity":{"storage":"5Gi"}}}`)
		}
	}
	show(cluster, "get", "pvc", "-o", "custom-columns=NAME:.metadata.name,STORAGE:.spec.resources.requests.storage,SOURCE-KIND:.spec.dataSource.kind,SOURCE-GROUP:.spec.dataSource.apiGroup,SOURCE:.spec.dataSource.name")

	if !wait {
		return nil
	}
	fmt.Printf("\nclonegate is serving; its log is in %s/clonegate.log. Try it:\n\n  export KUBECONFIG=%s\n  %s get pvc\n  %s apply -f config/samples/03-clone-too-small.yaml\n\nCtrl-C stops everything.\n",
		dir, cluster.Kubeconfig, cluster.KubectlBin, cluster.KubectlBin)
	logFile := filepath.Join(dir, "clonegate.log")
	<-ctx.Done()
	_ = os.WriteFile(logFile, server.Log.Bytes(), 0o644)
	fmt.Println("\n>> stopping")
	return nil
}

func show(c *testenv.Cluster, args ...string) {
	fmt.Printf("\n$ kubectl %s\n", joinArgs(args))
	r := c.Kubectl("", args...)
	fmt.Print(r.Output())
	if r.Code != 0 {
		fmt.Printf("(exit code %d)\n", r.Code)
	}
}

func joinArgs(args []string) string {
	out := ""
	for i, a := range args {
		if i > 0 {
			out += " "
		}
		if len(a) > 40 || a == "" {
			a = "'" + a + "'"
		}
		out += a
	}
	return out
}
