package install

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/clonegate/clonegate/webhook/rules"
)

// TestOverlaysDryRun applies every overlay with `kubectl apply
// --dry-run=server -k` against a real apiserver: schemas, RBAC, the
// PodSecurity admission (the namespace enforces restricted) and every
// admission plugin judge each object. cert-manager is not installed here;
// stand-in CRDs for Issuer and Certificate (kind and version, fields
// unchecked) let the certmanager overlay be applied whole.
func TestOverlaysDryRun(t *testing.T) {
	c := cluster(t, filepath.Join("testdata", "cert-manager-crds.yaml"))
	// The namespace for real first: a dry run does not create it, and its
	// pod-security label is what the Deployment is checked against.
	kubectl(t, c, "apply", "-f", filepath.Join(root, "config", "manager", "namespace.yaml"))

	for _, tt := range []struct {
		overlay string
		want    []string
	}{
		{"default", []string{
			"deployment.apps/clonegate created (server dry run)",
			"service/clonegate-webhook created (server dry run)",
			"poddisruptionbudget.policy/clonegate created (server dry run)",
			"networkpolicy.networking.k8s.io/clonegate created (server dry run)",
			"clusterrole.rbac.authorization.k8s.io/clonegate created (server dry run)",
			"role.rbac.authorization.k8s.io/clonegate-cert created (server dry run)",
			"mutatingwebhookconfiguration.admissionregistration.k8s.io/clonegate-mutating created (server dry run)",
			"validatingwebhookconfiguration.admissionregistration.k8s.io/clonegate-validating created (server dry run)",
		}},
		{"clientauth", []string{
			"deployment.apps/clonegate created (server dry run)",
			"validatingwebhookconfiguration.admissionregistration.k8s.io/clonegate-validating created (server dry run)",
		}},
		{"prometheus", []string{
			"deployment.apps/clonegate created (server dry run)",
			"servicemonitor.monitoring.coreos.com/clonegate created (server dry run)",
			"prometheusrule.monitoring.coreos.com/clonegate created (server dry run)",
			"configmap/clonegate-dashboard created (server dry run)",
		}},
		{"certmanager", []string{
			"deployment.apps/clonegate created (server dry run)",
			"issuer.cert-manager.io/clonegate-selfsigned created (server dry run)",
			"certificate.cert-manager.io/clonegate-webhook-cert created (server dry run)",
			"mutatingwebhookconfiguration.admissionregistration.k8s.io/clonegate-mutating created (server dry run)",
		}},
	} {
		t.Run(tt.overlay, func(t *testing.T) {
			r := kubectl(t, c, "apply", "--dry-run=server", "-k", filepath.Join(root, "config", tt.overlay))
			for _, w := range tt.want {
				if !strings.Contains(r.Stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, r.Output())
				}
			}
			// kubectl prints PodSecurity violations of a pod template as warnings.
			if strings.Contains(r.Stderr, "Warning") {
				t.Errorf("the apiserver warned:\n%s", r.Stderr)
			}
		})
	}

	t.Run("clientauth requires the apiserver's client certificate", func(t *testing.T) {
		out := kubectl(t, c, "kustomize", filepath.Join(root, "config", "clientauth")).Stdout
		for _, w := range []string{"--client-ca-file=/etc/clonegate-client-ca/ca.crt", "mountPath: /etc/clonegate-client-ca", "name: clonegate-client-ca", "--cert-mode=self"} {
			if !strings.Contains(out, w) {
				t.Errorf("config/clientauth lacks %q", w)
			}
		}
	})

	t.Run("the NetworkPolicy admits metrics only from the monitoring namespace", func(t *testing.T) {
		out := kubectl(t, c, "kustomize", filepath.Join(root, "config", "default")).Stdout
		if !strings.Contains(out, "kubernetes.io/metadata.name: monitoring") {
			t.Errorf("config/default's NetworkPolicy does not narrow the metrics port")
		}
	})

	t.Run("certmanager has no Secret access and mounts cert-manager's Secret", func(t *testing.T) {
		out := kubectl(t, c, "kustomize", filepath.Join(root, "config", "certmanager")).Stdout
		for _, w := range []string{"--cert-mode=cert-manager", "secretName: clonegate-webhook-tls", "cert-manager.io/inject-ca-from: clonegate-system/clonegate-webhook-cert"} {
			if !strings.Contains(out, w) {
				t.Errorf("config/certmanager lacks %q", w)
			}
		}
		for _, bad := range []string{"--cert-mode=self", "name: clonegate-cert", "emptyDir", "mutatingwebhookconfigurations", "validatingwebhookconfigurations"} {
			if strings.Contains(out, bad) {
				t.Errorf("config/certmanager still has %q", bad)
			}
		}
	})
}

// TestDefaultPolicyParses keeps the shipped policy file loadable by the
// version of clonegate it ships with.
func TestDefaultPolicyParses(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "config", "manager", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rules.ParsePolicy(data); err != nil {
		t.Fatalf("config/manager/policy.yaml: %v", err)
	}
	// Every rule commented there is a rule clonegate has (a rename would leave it stale).
	for _, m := range regexp.MustCompile(`(?m)^\s*# ([a-z-]+): (deny|warn|off)\b`).FindAllStringSubmatch(string(data), -1) {
		if _, known := rules.DefaultActions[rules.Rule(m[1])]; !known {
			t.Errorf("config/manager/policy.yaml mentions rule %q, which clonegate does not have", m[1])
		}
	}
}
