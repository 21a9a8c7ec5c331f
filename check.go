package main

import (
	_ "embed"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	offline "github.com/clonegate/clonegate/internal/check"
	"github.com/clonegate/clonegate/webhook/rules"
)

// readme is the source of the rule descriptions in SARIF: its rules table.
//
//go:embed README.md
var readme []byte

type checkOptions struct {
	paths      []string
	namespace  string
	output     string
	policyFile string
}

func newCheckCommand() *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check -f PATH... [flags]",
		Short: "Check manifests offline: the webhooks' rules, for CI",
		Long: `Applies clonegate's rules to manifests without a cluster: PersistentVolumeClaims,
StatefulSet volumeClaimTemplates and generic ephemeral volumes of Pods and pod
templates. Sources, volumes, StorageClasses and snapshots found among the same
manifests count; a source that is not among them is unknown, not missing.

PATH is a file, a directory (its *.yaml, *.yml, *.json, recursively) or - for
stdin; paths may also be given as arguments. Multi-document YAML and kind: List
are read.

Output (-o): text, one line per finding, "path:line Kind namespace/name:
denied|warning [rule] field: message", line being that of the offending field
(or, when the field is absent, of the nearest enclosing one); json, an array of
findings; sarif, SARIF 2.1.0 for code scanning; github, workflow commands that
GitHub Actions shows as annotations; junit, a JUnit XML report.

Exit status: 0 no denial, 1 some denial, 2 unreadable input or bad flags.`,
		Example: `  clonegate check -f deploy/ --policy clonegate-policy.yaml
  kustomize build overlays/prod | clonegate check -f -
  clonegate check -f deploy/ -o sarif > clonegate.sarif`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.paths = append(o.paths, args...)
			return o.run(cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cmd.CommandPath())
		},
	}
	f := cmd.Flags()
	f.StringSliceVarP(&o.paths, "filename", "f", nil, "a manifest file, a directory, or - for stdin (repeatable)")
	f.StringVarP(&o.namespace, "namespace", "n", "default", "namespace of objects that name none (as kubectl apply -n)")
	f.StringVarP(&o.output, "output", "o", "text", "output format: "+strings.Join(offline.Formats, ", "))
	f.StringVar(&o.policyFile, "policy", "", "policy file, as for clonegate serve (rules to deny, warn or off; exempt namespaces)")
	_ = cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	_ = cmd.MarkFlagFilename("policy", "yaml", "yml")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(offline.Formats, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// run checks and prints; name prefixes what it says on stderr.
func (o *checkOptions) run(stdin io.Reader, stdout, stderr io.Writer, name string) error {
	if len(o.paths) == 0 {
		return usageError{fmt.Errorf("no manifests given: -f PATH (a file, a directory, or - for stdin)")}
	}
	if !slices.Contains(offline.Formats, o.output) {
		return usageError{fmt.Errorf("-o %q: must be one of %s", o.output, strings.Join(offline.Formats, ", "))}
	}
	fail := func(err error) error {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "%s: %s\n", name, line)
		}
		return exitStatus(2)
	}
	policy := &rules.Policy{}
	if o.policyFile != "" {
		var err error
		if policy, err = rules.LoadPolicy(o.policyFile); err != nil {
			return fail(err)
		}
	}

	objs, err := offline.Load(o.paths, stdin)
	var report *offline.Report
	if err == nil {
		report, err = offline.Check(objs, policy, o.namespace)
	}
	if err != nil {
		// Findings from part of the input would mislead: say what could not
		// be read, and nothing else.
		return fail(err)
	}
	switch o.output {
	case "json":
		err = offline.WriteJSON(stdout, report.Findings)
	case "sarif":
		err = offline.WriteSARIF(stdout, report.Findings, offline.Tool{Version: version, RuleDocs: offline.ParseRuleDocs(readme)})
		if n := fromStdin(report.Findings); n > 0 {
			fmt.Fprintf(stderr, "%s: %d %s from stdin %s no file to point at, and GitHub code scanning refuses results without one: for SARIF, check the files (-f DIR)\n",
				name, n, plural(n, "finding", "findings"), plural(n, "has", "have"))
		}
	case "junit":
		err = offline.WriteJUnit(stdout, report)
	case "github":
		err = offline.WriteGitHub(stdout, report.Findings)
		fmt.Fprintf(stderr, "%s: %s\n", name, report.Summary())
	default:
		err = offline.WriteText(stdout, report.Findings)
		fmt.Fprintf(stderr, "%s: %s\n", name, report.Summary())
	}
	if err != nil {
		return fail(err)
	}
	if report.Denied() {
		return exitStatus(1)
	}
	return nil
}

func fromStdin(findings []offline.Finding) int {
	n := 0
	for _, f := range findings {
		if f.File == offline.Stdin {
			n++
		}
	}
	return n
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
