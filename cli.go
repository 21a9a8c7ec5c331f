package main

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// The names under which kubectl runs clonegate: as the plugin, and as the
// plugin's completion (kubectl __complete clonegate ARGS runs
// kubectl_complete-clonegate ARGS).
const (
	pluginName     = "kubectl-clonegate"
	completionName = "kubectl_complete-clonegate"
)

// invokedAs turns the program's name and arguments into the command's: as
// kubectl's completion helper, clonegate answers cobra's __complete.
func invokedAs(name string, args []string) (string, []string) {
	name = strings.TrimSuffix(name, ".exe")
	if name == completionName {
		return pluginName, append([]string{cobra.ShellCompRequestCmd}, args...)
	}
	return name, args
}

// exitStatus ends a command with a status after it has said why (or had
// nothing to say, as a check that found a denial).
type exitStatus int

func (s exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

// exampleProgram is "clonegate " starting a command in an example.
var exampleProgram = regexp.MustCompile(`(?m)(^ *|\| )clonegate `)

// usageError is a bad flag or argument: exit status 2, with a pointer to --help.
type usageError struct{ error }

// newCommand builds the command tree. name is the program's base name:
// as kubectl-clonegate, help and errors say "kubectl clonegate".
func newCommand(name string, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	display := "clonegate"
	if name == pluginName {
		display = "kubectl clonegate"
	}
	root := &cobra.Command{
		Use:   "clonegate",
		Short: "clonegate guards volume cloning before anything is provisioned",
		Long: `clonegate guards volume cloning before anything is provisioned: an admission
webhook for PersistentVolumeClaims with a data source (serve), and the same
rules over manifests offline, for CI (check).`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: display},
		Version:       version,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate(versionString() + "\n")
	// Defined here so that cobra adds no -v, which kubectl users read as verbosity.
	root.Flags().Bool("version", false, "print the version")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServeCommand(), newCheckCommand(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  noArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), versionString()) },
	})
	// Examples name the program as it was started.
	for _, c := range root.Commands() {
		c.Example = exampleProgram.ReplaceAllString(c.Example, "${1}"+display+" ")
	}
	return root
}

// execute runs root with args and turns what it returns into an exit status:
// 0, the status a command chose, 2 for bad usage, 1 for any other error.
func execute(root *cobra.Command, args []string) int {
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	var status exitStatus
	var usage usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &status):
		return int(status)
	case errors.As(err, &usage) || strings.HasPrefix(err.Error(), "unknown command"):
		fmt.Fprintf(root.ErrOrStderr(), "%s: %v\nRun '%s --help' for usage.\n", cmd.CommandPath(), err, cmd.CommandPath())
		return 2
	}
	fmt.Fprintf(root.ErrOrStderr(), "%s: %v\n", cmd.CommandPath(), err)
	return 1
}

// noArgs is cobra.NoArgs as bad usage.
func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usageError{err}
	}
	return nil
}

func versionString() string {
	goVersion := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		goVersion = info.GoVersion
	}
	return fmt.Sprintf("clonegate %s (%s)", version, goVersion)
}
