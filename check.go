package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	offline "github.com/clonegate/clonegate/internal/check"
	"github.com/clonegate/clonegate/webhook/rules"
)

const checkUsage = `Usage: clonegate check -f PATH... [flags]

Applies clonegate's rules to manifests without a cluster: PersistentVolumeClaims,
StatefulSet volumeClaimTemplates and generic ephemeral volumes of Pods and pod
templates. Sources, volumes, StorageClasses and snapshots found among the same
manifests count; a source that is not among them is unknown, not missing.

PATH is a file, a directory (its *.yaml, *.yml, *.json, recursively) or - for
stdin (kustomize build . | clonegate check -f -). Multi-document YAML and
kind: List are read.

Output: one line per finding, "path:doc Kind namespace/name: denied|warning
[rule] field: message", doc counting YAML documents from 1; -o json for an array.
Exit status: 0 no denial, 1 some denial, 2 unreadable input or bad flags.

Flags:
`

// pathList collects repeated -f flags.
type pathList []string

func (p *pathList) String() string     { return strings.Join(*p, ",") }
func (p *pathList) Set(v string) error { *p = append(*p, v); return nil }

func check(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("clonegate check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, checkUsage); fs.PrintDefaults() }
	var paths pathList
	fs.Var(&paths, "f", "a manifest file, a directory, or - for stdin (repeatable; also as arguments)")
	fs.Var(&paths, "filename", "same as -f")
	namespace := fs.String("namespace", "default", "namespace of objects that name none (as kubectl apply -n)")
	fs.StringVar(namespace, "n", "default", "same as --namespace")
	output := fs.String("o", "text", "output format: text or json")
	fs.StringVar(output, "output", "text", "same as -o")
	policyFile := fs.String("policy", "", "policy file, as for clonegate serve (rules to deny, warn or off; exempt namespaces)")
	// Paths and flags may come in any order, as with kubectl.
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		rest = fs.Args()
		for len(rest) > 0 && (rest[0] == offline.Stdin || !strings.HasPrefix(rest[0], "-")) {
			paths, rest = append(paths, rest[0]), rest[1:]
		}
		if len(rest) == 0 {
			break
		}
	}
	if len(paths) == 0 {
		fmt.Fprintln(stderr, "clonegate check: no manifests given: -f PATH (a file, a directory, or - for stdin)")
		return 2
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "clonegate check: -o %q: must be text or json\n", *output)
		return 2
	}
	policy := &rules.Policy{}
	if *policyFile != "" {
		var err error
		if policy, err = rules.LoadPolicy(*policyFile); err != nil {
			fmt.Fprintf(stderr, "clonegate check: %v\n", err)
			return 2
		}
	}

	objs, err := offline.Load(paths, stdin)
	var report *offline.Report
	if err == nil {
		report, err = offline.Check(objs, policy, *namespace)
	}
	if err != nil {
		// Findings from part of the input would mislead: say what could not
		// be read, and nothing else.
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "clonegate check: %s\n", line)
		}
		return 2
	}
	if *output == "json" {
		err = offline.WriteJSON(stdout, report.Findings)
	} else {
		err = offline.WriteText(stdout, report.Findings)
		fmt.Fprintf(stderr, "clonegate check: %s\n", report.Summary())
	}
	if err != nil {
		fmt.Fprintf(stderr, "clonegate check: %v\n", err)
		return 2
	}
	if report.Denied() {
		return 1
	}
	return 0
}
