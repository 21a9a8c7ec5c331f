package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/clonegate/clonegate/internal/testenv"
)

var built struct {
	once sync.Once
	bin  string
	err  error
}

// clonegateBinary builds clonegate once for the tests that run it as a
// program: under another name, and without a cluster.
func clonegateBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "clonegate-cli-")
		if err != nil {
			built.err = err
			return
		}
		built.bin, built.err = testenv.BuildClonegate(".", dir)
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.bin != "" {
		os.RemoveAll(filepath.Dir(built.bin))
	}
	os.Exit(code)
}

// kubectlBinary is the kubectl that make tools builds.
func kubectlBinary(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = "bin/k8s/v1.37.2-etcd-v3.6.8"
	}
	kubectl, err := filepath.Abs(filepath.Join(dir, "kubectl"))
	if err == nil {
		_, err = os.Stat(kubectl)
	}
	if err != nil {
		t.Fatalf("kubectl: %v (make tools builds it)", err)
	}
	return kubectl
}

// Installed as kubectl-clonegate on the PATH, the binary is a kubectl plugin
// that calls itself "kubectl clonegate".
func TestKubectlPlugin(t *testing.T) {
	kubectl, bin := kubectlBinary(t), clonegateBinary(t)
	plugins := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(plugins, pluginName)); err != nil {
		t.Fatal(err)
	}
	kubectlRun := func(args ...string) (string, string, int) {
		cmd := exec.Command(kubectl, args...)
		cmd.Env = append(os.Environ(), "PATH="+plugins+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+filepath.Join(plugins, "none"))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if exit, ok := err.(*exec.ExitError); ok {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}

	stdout, _, code := kubectlRun("plugin", "list")
	if code != 0 || !strings.Contains(stdout, filepath.Join(plugins, pluginName)) {
		t.Errorf("kubectl plugin list (exit %d) does not list %s:\n%s", code, pluginName, stdout)
	}
	stdout, stderr, code := kubectlRun("clonegate", "check", "-f", td+"undersized", "-o", "github")
	if code != 1 || !strings.Contains(stdout, "::error file="+td+"undersized/clone.yaml,line=9,col=26,title=clonegate clone-size::") {
		t.Errorf("kubectl clonegate check: exit %d, want 1 and a clone-size annotation; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if want := "kubectl clonegate check: 3 objects"; !strings.HasPrefix(stderr, want) {
		t.Errorf("stderr %q, want it to start with %q", stderr, want)
	}
	// Completion: kubectl asks kubectl_complete-clonegate, the same binary.
	if err := os.Symlink(bin, filepath.Join(plugins, completionName)); err != nil {
		t.Fatal(err)
	}
	stdout, _, code = kubectlRun("__complete", "clonegate", "check", "-o", "")
	if want := "text\njson\nsarif\ngithub\njunit\n:4\n"; code != 0 || stdout != want {
		t.Errorf("kubectl __complete clonegate check -o '': exit %d, stdout %q, want %q", code, stdout, want)
	}
	stdout, _, code = kubectlRun("__complete", "clonegate", "")
	if code != 0 || !strings.Contains(stdout, "check\t") || !strings.Contains(stdout, "serve\t") {
		t.Errorf("kubectl __complete clonegate '': exit %d, stdout %q, want the commands", code, stdout)
	}

	stdout, _, code = kubectlRun("clonegate", "--help")
	if code != 0 || !strings.Contains(stdout, "kubectl clonegate [command]") {
		t.Errorf("kubectl clonegate --help: exit %d, want usage naming \"kubectl clonegate\":\n%s", code, stdout)
	}
	stdout, _, code = kubectlRun("clonegate", "check", "--help")
	if code != 0 || !strings.Contains(stdout, "  kustomize build overlays/prod | kubectl clonegate check -f -\n") {
		t.Errorf("kubectl clonegate check --help: exit %d, want examples naming \"kubectl clonegate\":\n%s", code, stdout)
	}
	_, stderr, code = kubectlRun("clonegate", "check", "--frobnicate")
	if code != 2 || stderr != "kubectl clonegate check: unknown flag: --frobnicate\nRun 'kubectl clonegate check --help' for usage.\n" {
		t.Errorf("bad flag: exit %d, stderr %q", code, stderr)
	}
}

// Without a cluster, serve says so in one line, and what to do: no
// controller-runtime stack trace.
func TestServeWithoutACluster(t *testing.T) {
	bin := clonegateBinary(t)
	home := t.TempDir()
	for _, c := range []struct{ name, kubeconfig, want string }{
		{"no KUBECONFIG, no ~/.kube/config", "", "clonegate serve: no cluster to talk to: set KUBECONFIG to a kubeconfig file (or create ~/.kube/config), or run clonegate serve in a pod, where it uses its service account\n"},
		{"KUBECONFIG naming nothing", filepath.Join(home, "nope"), "clonegate serve: no cluster to talk to: KUBECONFIG=" + filepath.Join(home, "nope") + " holds no cluster; point it at a kubeconfig file, or run clonegate serve in a pod, where it uses its service account\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin, "serve")
			cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "KUBECONFIG=" + c.kubeconfig}
			out, err := cmd.CombinedOutput()
			if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
				t.Errorf("err %v, want exit status 1", err)
			}
			if string(out) != c.want {
				t.Errorf("output:\n%s\nwant exactly:\n%s", out, c.want)
			}
		})
	}
}

func TestCommandLine(t *testing.T) {
	cases := []struct {
		name           string
		args           []string
		code           int
		stdout, stderr string // substrings
	}{
		{"completion for bash", []string{"completion", "bash"}, 0, "# bash completion V2 for clonegate", ""},
		{"completion for zsh", []string{"completion", "zsh"}, 0, "#compdef clonegate", ""},
		{"help lists the commands", []string{"--help"}, 0, "  check       Check manifests offline", ""},
		{"no command is help", nil, 0, "Available Commands:", ""},
		{"help for check lists its flags", []string{"check", "--help"}, 0, "  -o, --output string      output format: text, json, sarif, github, junit", ""},
		{"help for serve keeps kubebuilder's flag names", []string{"serve", "-h"}, 0, "--health-probe-bind-address string", ""},
		{"version", []string{"version"}, 0, "clonegate dev (go", ""},
		{"--version", []string{"--version"}, 0, "clonegate dev (go", ""},
		{"an unknown command", []string{"chek"}, 2, "", "clonegate: unknown command \"chek\" for \"clonegate\""},
		{"flags after paths, and -o before them", []string{"check", td + "good", "-o", "json", "--namespace", "x"}, 0, `"namespace": "x"`, ""},
		{"--filename=PATH", []string{"check", "--filename=" + td + "good"}, 0, "source-not-bound", ""},
		{"serve takes no arguments", []string{"serve", "now"}, 2, "", "clonegate serve: unknown command \"now\" for \"clonegate serve\""},
		{"serve refuses a bad flag value before looking for a cluster", []string{"serve", "--tls-min-version", "1.1"}, 1, "", "clonegate serve: --tls-min-version=\"1.1\": must be 1.2 or 1.3\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(c.args, strings.NewReader(""), &stdout, &stderr); code != c.code {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, c.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), c.stdout) {
				t.Errorf("stdout lacks %q:\n%s", c.stdout, stdout.String())
			}
			if !strings.Contains(stderr.String(), c.stderr) {
				t.Errorf("stderr lacks %q:\n%s", c.stderr, stderr.String())
			}
		})
	}
}
