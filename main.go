// Command clonegate guards PersistentVolumeClaim data sources at admission
// time: `clonegate serve` runs the webhooks, `clonegate check` applies the
// same rules to manifests offline.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `clonegate guards volume cloning before anything is provisioned.

Usage:
  clonegate serve [flags]        serve the admission webhooks
  clonegate check -f PATH...     check manifests offline (CI policy gate)
  clonegate version              print the version

Run "clonegate serve -h" or "clonegate check -h" for their flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "check":
		return check(args[1:], stdin, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "clonegate: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func versionString() string {
	goVersion := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		goVersion = info.GoVersion
	}
	return fmt.Sprintf("clonegate %s (%s)", version, goVersion)
}
