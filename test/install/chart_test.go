package install

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/clonegate/clonegate/webhook/rules"
)

// The chart and config/ are two renderings of one install; these tests keep
// them from drifting apart and prove each chart rendering against the real
// apiserver, as TestOverlaysDryRun does for the overlays.

// Each chart values set and the overlay it must equal. namespace.create and
// image.tag=dev make the chart render what config/default hard-codes.
var chartVsOverlay = []struct {
	name    string
	overlay string
	set     []string
}{
	{"default", "default", nil},
	{"cert-manager", "certmanager", []string{"certManager.enabled=true"}},
	{"monitoring", "prometheus", []string{"metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true", "metrics.dashboard.enabled=true"}},
	{"client auth", "clientauth", []string{"clientAuth.enabled=true"}},
}

// TestChartLint runs helm lint --strict over the chart with each values set.
func TestChartLint(t *testing.T) {
	for _, tt := range chartVsOverlay {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir()}
			for _, s := range tt.set {
				args = append(args, "--set", s)
			}
			if out, err := helm(args...); err != nil {
				t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

// TestChartMatchesKustomize renders the chart with each values set and the
// matching overlay, and compares them object by object. What may differ is
// only what Helm adds: its labels (chart, instance, managed-by, version), the
// policy checksum that rolls the pods (kustomize rolls them by the
// ConfigMap's hashed name instead), and the policy file's layout (compared
// as the policy clonegate loads from it).
func TestChartMatchesKustomize(t *testing.T) {
	for _, tt := range chartVsOverlay {
		t.Run(tt.name, func(t *testing.T) {
			kustomized, err := run(kubectlBin(), "kustomize", filepath.Join(root, "config", tt.overlay))
			if err != nil {
				t.Fatalf("kubectl kustomize config/%s: %v\n%s", tt.overlay, err, kustomized)
			}
			rendered := renderChart(t, "clonegate-system", append([]string{"namespace.create=true", "image.tag=dev"}, tt.set...)...)
			want, wantPolicy := normalize(t, kustomized)
			got, gotPolicy := normalize(t, rendered)
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("charts/clonegate (%s) and config/%s differ (-kustomize +helm):\n%s", strings.Join(tt.set, ","), tt.overlay, d)
			}
			if d := cmp.Diff(wantPolicy, gotPolicy); d != "" {
				t.Errorf("the policy differs (-config/manager/policy.yaml +values.yaml):\n%s", d)
			}
		})
	}
}

// TestChartValues renders every value a user sets and checks it lands
// where it should, in another namespace than the default.
func TestChartValues(t *testing.T) {
	out := renderChart(t, "storage-guard", "--values", filepath.Join("testdata", "chart-values.yaml"))
	objs := decodeAll(t, out)
	get := func(kind, name string) map[string]any {
		t.Helper()
		for _, o := range objs {
			if o["kind"] == kind && str(o, "metadata", "name") == name {
				return o
			}
		}
		t.Fatalf("no %s %s rendered", kind, name)
		return nil
	}

	dep := get("Deployment", "clonegate")
	pod := dig(dep, "spec", "template", "spec").(map[string]any)
	ctr := pod["containers"].([]any)[0].(map[string]any)
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"replicas", dig(dep, "spec", "replicas"), float64(3)},
		{"image", ctr["image"], "registry.example.com/clonegate:v1.2.3"},
		{"pull policy", ctr["imagePullPolicy"], "Always"},
		{"memory limit", dig(ctr, "resources", "limits", "memory"), "512Mi"},
		{"nodeSelector", dig(pod, "nodeSelector", "node-role.example.com/storage"), "true"},
		{"toleration", dig(pod, "tolerations").([]any)[0].(map[string]any)["key"], "dedicated"},
		{"affinity", dig(pod, "affinity", "nodeAffinity") != nil, true},
		{"priority class", pod["priorityClassName"], "platform-critical"},
		{"pod label", dig(dep, "spec", "template", "metadata", "labels", "team"), "storage"},
		{"pod annotation", dig(dep, "spec", "template", "metadata", "annotations", "example.com/owner"), "storage"},
		{"pull secret", pod["imagePullSecrets"].([]any)[0].(map[string]any)["name"], "regcred"},
		{"log format", slices.Contains(toStrings(ctr["args"]), "--log-format=text"), true},
		{"PDB", dig(get("PodDisruptionBudget", "clonegate"), "spec", "minAvailable"), float64(2)},
		{"metrics namespace", dig(get("NetworkPolicy", "clonegate"), "spec", "ingress").([]any)[1].(map[string]any)["from"].([]any)[0].(map[string]any)["namespaceSelector"].(map[string]any)["matchLabels"].(map[string]any)["kubernetes.io/metadata.name"], "prometheus"},
		{"webhook sources", dig(get("NetworkPolicy", "clonegate"), "spec", "ingress").([]any)[0].(map[string]any)["from"] != nil, true},
		{"ServiceMonitor label", dig(get("ServiceMonitor", "clonegate"), "metadata", "labels", "release"), "kube-prometheus"},
		{"PrometheusRule label", dig(get("PrometheusRule", "clonegate"), "metadata", "labels", "release"), "kube-prometheus"},
		{"certificate DNS name", dig(get("Certificate", "clonegate-webhook-cert"), "spec", "dnsNames").([]any)[0], "clonegate-webhook.storage-guard.svc"},
		{"issuer", dig(get("Certificate", "clonegate-webhook-cert"), "spec", "issuerRef", "name"), "corp-ca"},
		{"service account subject", dig(get("ClusterRoleBinding", "clonegate"), "subjects").([]any)[0].(map[string]any)["namespace"], "storage-guard"},
	} {
		if !cmp.Equal(c.got, c.want) {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}
	for _, o := range objs {
		if o["kind"] == "Issuer" || o["kind"] == "Role" {
			t.Errorf("%s %s rendered: certManager.issuerRef names the issuer, and cert-manager owns the Secret", o["kind"], str(o, "metadata", "name"))
		}
	}

	for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		cfg := get(kind, map[string]string{"MutatingWebhookConfiguration": "clonegate-mutating", "ValidatingWebhookConfiguration": "clonegate-validating"}[kind])
		if got := str(cfg, "metadata", "annotations", "cert-manager.io/inject-ca-from"); got != "storage-guard/clonegate-webhook-cert" {
			t.Errorf("%s: inject-ca-from %q", kind, got)
		}
		for _, w := range cfg["webhooks"].([]any) {
			w := w.(map[string]any)
			name := w["name"].(string)
			if fp := w["failurePolicy"]; fp != "Ignore" {
				t.Errorf("%s: failurePolicy %v, want Ignore (the claim webhooks from values; the workload ones always)", name, fp)
			}
			if w["timeoutSeconds"] != float64(10) {
				t.Errorf("%s: timeoutSeconds %v, want 10", name, w["timeoutSeconds"])
			}
			if ns := str(w, "clientConfig", "service", "namespace"); ns != "storage-guard" {
				t.Errorf("%s: calls the Service in %q", name, ns)
			}
			exempt := toStrings(dig(w, "namespaceSelector", "matchExpressions").([]any)[0].(map[string]any)["values"])
			if want := []string{"kube-system", "storage-guard", "batch", "ci"}; !cmp.Equal(exempt, want) {
				t.Errorf("%s: namespaces left out %v, want %v", name, exempt, want)
			}
		}
	}

	policy, err := rules.ParsePolicy([]byte(str(get("ConfigMap", "clonegate-policy"), "data", "policy.yaml")))
	if err != nil {
		t.Fatalf("the rendered policy does not load: %v", err)
	}
	if policy.Action(rules.RuleCloneCapacity) != rules.Deny || !policy.Exempt("sandbox") ||
		policy.Groups()["Backup"] != "backup.example.com" || !policy.CrossNamespace.AllowWithReferenceGrant {
		t.Errorf("the rendered policy is not the values' policy: %+v", policy)
	}
}

// TestChartRefusesBadValues: values.schema.json stops a mistyped rule or
// action at `helm install`, rather than at the pods' start.
func TestChartRefusesBadValues(t *testing.T) {
	for _, tt := range []struct {
		set, want string
	}{
		{"policy.rules.clone-size=dney", "/policy/rules/clone-size': value must be one of 'deny', 'warn', 'off'"},
		{"policy.rules.clone-sise=deny", "clone-sise"},
		{"webhooks.failurePolicy=fail", "/webhooks/failurePolicy"},
		{"policy.exemptNamespaces[0]=Not_A_Namespace", "/policy/exemptNamespaces/0"},
		{"replicaCount=0", "replicaCount"},
	} {
		t.Run(tt.set, func(t *testing.T) {
			out, err := helm("template", "clonegate", chartDir(), "--set", tt.set)
			if err == nil {
				t.Fatalf("helm template --set %s rendered; want a refusal", tt.set)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("the refusal does not name %q:\n%s", tt.want, out)
			}
		})
	}

	// An umbrella chart passes its globals to every subchart: not a mistake.
	if out, err := helm("template", "clonegate", chartDir(), "--set", "global.imageRegistry=registry.example.com"); err != nil {
		t.Errorf("helm template with a global value: %v\n%s", err, out)
	}

	// The schema knows exactly the rules clonegate has.
	data, err := os.ReadFile(filepath.Join(chartDir(), "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties struct {
			Policy struct {
				Properties struct {
					Rules struct {
						PropertyNames struct {
							Enum []string `json:"enum"`
						} `json:"propertyNames"`
					} `json:"rules"`
				} `json:"properties"`
			} `json:"policy"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	var known []string
	for r := range rules.DefaultActions {
		known = append(known, string(r))
	}
	got := schema.Properties.Policy.Properties.Rules.PropertyNames.Enum
	slices.Sort(known)
	slices.Sort(got)
	if !slices.Equal(got, known) {
		t.Errorf("values.schema.json's rules %v, clonegate's %v", got, known)
	}
}

// TestChartDryRunAndInstall applies each chart rendering with kubectl apply
// --dry-run=server against a real apiserver (cert-manager and Prometheus
// Operator CRDs as stand-ins), then installs, upgrades and uninstalls the
// chart there with helm itself.
func TestChartDryRunAndInstall(t *testing.T) {
	c := cluster(t, filepath.Join("testdata", "cert-manager-crds.yaml"))
	// The namespace for real (a dry run does not create it), enforcing the
	// restricted profile the pods are checked against.
	kubectl(t, c, "apply", "-f", filepath.Join(root, "config", "manager", "namespace.yaml"))

	for _, tt := range chartVsOverlay {
		t.Run(tt.name, func(t *testing.T) {
			r := c.Kubectl(renderChart(t, "clonegate-system", tt.set...), "apply", "--dry-run=server", "-f", "-")
			if r.Code != 0 {
				t.Fatalf("kubectl apply --dry-run=server: exit %d\n%s", r.Code, r.Output())
			}
			for _, w := range []string{"deployment.apps/clonegate created (server dry run)", "mutatingwebhookconfiguration.admissionregistration.k8s.io/clonegate-mutating created (server dry run)"} {
				if !strings.Contains(r.Stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, r.Output())
				}
			}
			if strings.Contains(r.Stderr, "Warning") {
				t.Errorf("the apiserver warned:\n%s", r.Stderr)
			}
		})
	}

	t.Run("every value set, in another namespace", func(t *testing.T) {
		kubectl(t, c, "create", "namespace", "storage-guard")
		kubectl(t, c, "label", "namespace", "storage-guard", "pod-security.kubernetes.io/enforce=restricted")
		kubectl(t, c, "create", "priorityclass", "platform-critical", "--value=1000000")
		r := c.Kubectl(renderChart(t, "storage-guard", "--values", filepath.Join("testdata", "chart-values.yaml")), "apply", "--dry-run=server", "-f", "-")
		if r.Code != 0 || strings.Contains(r.Stderr, "Warning") {
			t.Fatalf("kubectl apply --dry-run=server: exit %d\n%s", r.Code, r.Output())
		}
	})

	t.Run("helm install, upgrade, uninstall", func(t *testing.T) {
		kc := "--kubeconfig=" + c.Kubeconfig
		if out, err := helm("install", "clonegate", chartDir(), "-n", "clonegate-system", kc); err != nil {
			t.Fatalf("helm install: %v\n%s", err, out)
		}
		kubectl(t, c, "-n", "clonegate-system", "get", "deployment/clonegate", "service/clonegate-webhook", "configmap/clonegate-policy", "serviceaccount/clonegate", "role/clonegate-cert", "poddisruptionbudget/clonegate", "networkpolicy/clonegate")
		kubectl(t, c, "get", "clusterrole/clonegate", "mutatingwebhookconfiguration/clonegate-mutating", "validatingwebhookconfiguration/clonegate-validating")
		checksum := func() string {
			return kubectl(t, c, "-n", "clonegate-system", "get", "deployment/clonegate", "-o", `jsonpath={.spec.template.metadata.annotations.checksum/policy}`).Stdout
		}
		before := checksum()
		// clonegate injects its CA into both configurations (self mode);
		// an upgrade must leave it there, or every review fails until the
		// next injection.
		for _, cfg := range []string{"mutatingwebhookconfiguration/clonegate-mutating", "validatingwebhookconfiguration/clonegate-validating"} {
			kubectl(t, c, "patch", cfg, "--type=json", "-p", `[{"op":"add","path":"/webhooks/0/clientConfig/caBundle","value":"`+injectedCA+`"}]`)
		}
		if out, err := helm("upgrade", "clonegate", chartDir(), "-n", "clonegate-system", kc, "--set", "policy.rules.clone-capacity=deny"); err != nil {
			t.Fatalf("helm upgrade: %v\n%s", err, out)
		}
		if after := checksum(); after == before || after == "" {
			t.Errorf("a new policy left the pod template as it was (checksum %q → %q): the pods would not load it", before, after)
		}
		for _, cfg := range []string{"mutatingwebhookconfiguration/clonegate-mutating", "validatingwebhookconfiguration/clonegate-validating"} {
			if got := kubectl(t, c, "get", cfg, "-o", "jsonpath={.webhooks[0].clientConfig.caBundle}").Stdout; got != injectedCA {
				t.Errorf("helm upgrade changed the injected caBundle of %s to %q", cfg, got)
			}
		}
		policy := kubectl(t, c, "-n", "clonegate-system", "get", "configmap/clonegate-policy", "-o", `jsonpath={.data.policy\.yaml}`).Stdout
		if p, err := rules.ParsePolicy([]byte(policy)); err != nil || p.Action(rules.RuleCloneCapacity) != rules.Deny {
			t.Errorf("the upgraded policy is not in the ConfigMap (%v):\n%s", err, policy)
		}
		if out, err := helm("uninstall", "clonegate", "-n", "clonegate-system", kc, "--wait"); err != nil {
			t.Fatalf("helm uninstall: %v\n%s", err, out)
		}
		if r := c.Kubectl("", "get", "mutatingwebhookconfiguration/clonegate-mutating", "clusterrole/clonegate"); r.Code == 0 {
			t.Errorf("helm uninstall left cluster-scoped objects:\n%s", r.Stdout)
		}
	})

	// namespace.create is for renderings applied as they are (helm template,
	// Argo CD, Flux): the Namespace comes first, restricted. (helm install
	// cannot use it: helm stores its release in the namespace before it
	// creates anything.)
	t.Run("rendered with its namespace, applied to a cluster without it", func(t *testing.T) {
		r := c.Kubectl(renderChart(t, "fresh-ns", "namespace.create=true"), "apply", "-f", "-")
		if r.Code != 0 || strings.Contains(r.Stderr, "Warning") {
			t.Fatalf("kubectl apply: exit %d\n%s", r.Code, r.Output())
		}
		if got := kubectl(t, c, "get", "namespace", "fresh-ns", "-o", `jsonpath={.metadata.labels.pod-security\.kubernetes\.io/enforce}`).Stdout; got != "restricted" {
			t.Errorf("namespace fresh-ns enforces %q, want restricted", got)
		}
	})
}

// injectedCA stands for the CA clonegate injects (any base64 is accepted).
const injectedCA = "aW5qZWN0ZWQgQ0E="

func chartDir() string   { return filepath.Join(root, "charts", "clonegate") }
func kubectlBin() string { return filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl") }

// helm runs bin/helm (make tools builds it), with a HOME of its own so that
// no user configuration or repository cache takes part.
func helm(args ...string) (string, error) {
	bin := filepath.Join(root, "bin", "helm")
	if !exists(bin) {
		return "", fmt.Errorf("%s is missing: run make tools", bin)
	}
	cmd := exec.Command(bin, args...)
	home, err := os.MkdirTemp("", "clonegate-helm-home-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(home)
	cmd.Env = append(os.Environ(), "HOME="+home, "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

// renderChart is helm template of the chart into namespace; args are
// --set values, or flags when they start with a dash.
func renderChart(t *testing.T, namespace string, args ...string) string {
	t.Helper()
	cmdline := []string{"template", "clonegate", chartDir(), "--namespace", namespace}
	for i := 0; i < len(args); i++ {
		if strings.HasPrefix(args[i], "-") {
			cmdline = append(cmdline, args[i], args[i+1])
			i++
			continue
		}
		cmdline = append(cmdline, "--set", args[i])
	}
	out, err := helm(cmdline...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(cmdline, " "), err, out)
	}
	return out
}

func run(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

func decodeAll(t *testing.T, manifests string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	for {
		var o map[string]any
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("decoding rendered manifests: %v", err)
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
}

var (
	helmLabels     = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"}
	hashedPolicyCM = regexp.MustCompile(`^clonegate-policy-[a-z0-9]{10}$`)
)

// normalize keys the objects by kind, namespace and name, with what may
// differ between Helm and kustomize taken out, and returns the policy they
// carry, as clonegate loads it.
func normalize(t *testing.T, manifests string) (map[string]map[string]any, *rules.Policy) {
	t.Helper()
	out := map[string]map[string]any{}
	var policy *rules.Policy
	for _, o := range decodeAll(t, manifests) {
		meta := o["metadata"].(map[string]any)
		if labels, ok := meta["labels"].(map[string]any); ok {
			for _, l := range helmLabels {
				delete(labels, l)
			}
		}
		if name, _ := meta["name"].(string); o["kind"] == "ConfigMap" && hashedPolicyCM.MatchString(name) {
			meta["name"] = "clonegate-policy"
		}
		switch o["kind"] {
		case "ConfigMap":
			if meta["name"] == "clonegate-policy" {
				data := o["data"].(map[string]any)
				p, err := rules.ParsePolicy([]byte(data["policy.yaml"].(string)))
				if err != nil {
					t.Fatalf("the policy does not load: %v", err)
				}
				policy = p
				delete(data, "policy.yaml")
			}
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			// kustomize re-folds the long CEL expressions: compare them as
			// CEL reads them, whitespace runs being one blank.
			for _, w := range o["webhooks"].([]any) {
				for _, mc := range dig(w, "matchConditions").([]any) {
					mc := mc.(map[string]any)
					mc["expression"] = strings.Join(strings.Fields(mc["expression"].(string)), " ")
				}
			}
		case "Deployment":
			tmeta := dig(o, "spec", "template", "metadata").(map[string]any)
			if a, ok := tmeta["annotations"].(map[string]any); ok {
				delete(a, "checksum/policy")
				if len(a) == 0 {
					delete(tmeta, "annotations")
				}
			}
			for _, v := range dig(o, "spec", "template", "spec", "volumes").([]any) {
				if cm, ok := v.(map[string]any)["configMap"].(map[string]any); ok && hashedPolicyCM.MatchString(cm["name"].(string)) {
					cm["name"] = "clonegate-policy"
				}
			}
		}
		ns, _ := meta["namespace"].(string)
		out[fmt.Sprintf("%s %s/%s", o["kind"], ns, meta["name"])] = o
	}
	return out, policy
}

// dig walks nested maps; nil when a step is missing.
func dig(o any, path ...string) any {
	for _, p := range path {
		m, ok := o.(map[string]any)
		if !ok {
			return nil
		}
		o = m[p]
	}
	return o
}

func str(o any, path ...string) string { s, _ := dig(o, path...).(string); return s }

func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, fmt.Sprint(s))
	}
	return out
}
