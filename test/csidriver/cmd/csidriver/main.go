// Command csidriver serves the clonegate test CSI driver (package test/csidriver) on a unix socket,
// for the external-provisioner and csi-snapshotter of `make run` and the agreement matrix.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/clonegate/clonegate/test/csidriver"
)

func main() {
	endpoint := flag.String("endpoint", "unix:///tmp/csi.sock", "unix socket to serve CSI on (unix:///path or a path)")
	stateDir := flag.String("state-dir", "", "directory holding the volumes, snapshots and state.json (required)")
	name := flag.String("driver-name", csidriver.DefaultName, "CSI driver name")
	nodeID := flag.String("node-id", "node-1", "node id reported by NodeGetInfo")
	quiet := flag.Bool("quiet", false, "do not log every CSI call")
	flag.Parse()

	d, err := csidriver.New(csidriver.Config{Name: *name, NodeID: *nodeID, StateDir: *stateDir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "csidriver:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := csidriver.StdLogf
	if *quiet {
		logf = nil
	}
	if err := d.Serve(ctx, *endpoint, logf); err != nil {
		fmt.Fprintln(os.Stderr, "csidriver:", err)
		os.Exit(1)
	}
}
