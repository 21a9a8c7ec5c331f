// Command clonegate guards PersistentVolumeClaim data sources at admission
// time: `clonegate serve` runs the webhooks, `clonegate check` applies the
// same rules to manifests offline. Installed as kubectl-clonegate it is a
// kubectl plugin: `kubectl clonegate check …`.
package main

import (
	"io"
	"os"
	"path/filepath"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	name, args := invokedAs(filepath.Base(os.Args[0]), os.Args[1:])
	os.Exit(execute(newCommand(name, os.Stdin, os.Stdout, os.Stderr), args))
}

// run runs clonegate with args (without the program name) and returns the
// exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return execute(newCommand("clonegate", stdin, stdout, stderr), args)
}
