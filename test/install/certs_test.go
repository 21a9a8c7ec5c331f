package install

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clonegate/clonegate/certs"
	"github.com/clonegate/clonegate/internal/testenv"
)

const certNamespace = "clonegate-system"

var secretKey = client.ObjectKey{Namespace: certNamespace, Name: "clonegate-webhook-cert"}

// TestSelfManagedCertificates runs two replicas of `clonegate serve
// --cert-mode=self` against a fresh apiserver whose webhook configurations
// (config/webhook, pointed at 127.0.0.1) carry no caBundle, and follows the
// certificate through its life: created once, injected, trusted by the
// apiserver for real reviews, rotated and served anew without a restart.
func TestSelfManagedCertificates(t *testing.T) {
	c := cluster(t)
	cl, err := certs.NewClient(c.Env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kubectl(t, c, "create", "namespace", certNamespace)

	// Both replicas start at once; the apiserver calls the first.
	a := startReplica(t, c, "replica-a")
	b := startReplica(t, c, "replica-b")
	installWebhooks(t, cl, a.addr)
	poll(t, "both replicas ready", 60*time.Second, func() (bool, error) { return a.ready() && b.ready(), nil }, a, b)

	secret := &corev1.Secret{}
	if err := cl.Get(ctx, secretKey, secret); err != nil {
		t.Fatalf("the certificate Secret: %v", err)
	}
	bundle, err := certs.ParseBundle(secret.Data)
	if err != nil {
		t.Fatalf("the certificate Secret does not parse: %v", err)
	}

	t.Run("one Secret, created once, used by both replicas", func(t *testing.T) {
		if secret.Type != corev1.SecretTypeTLS {
			t.Errorf("Secret type %q, want %q", secret.Type, corev1.SecretTypeTLS)
		}
		if n := strings.Count(a.log.String()+b.log.String(), "created certificate Secret"); n != 1 {
			t.Errorf("%d replicas created the Secret, want 1", n)
		}
		for _, r := range []*replica{a, b} {
			onDisk, err := os.ReadFile(filepath.Join(r.certDir, "tls.crt"))
			if err != nil || !bytes.Equal(onDisk, secret.Data["tls.crt"]) {
				t.Errorf("%s: tls.crt on disk is not the Secret's (%v)", r.name, err)
			}
			if served, err := r.servedCert(nil); err != nil || !served.Equal(bundle.Cert) {
				t.Errorf("%s serves another certificate than the Secret's (%v)", r.name, err)
			}
		}
		want := []string{"clonegate-webhook.clonegate-system.svc", "clonegate-webhook.clonegate-system.svc.cluster.local"}
		for _, name := range want {
			if err := bundle.Cert.VerifyHostname(name); err != nil {
				t.Errorf("serving certificate: %v", err)
			}
		}
	})

	t.Run("CA injected into every webhook", func(t *testing.T) {
		for _, got := range caBundles(t, cl) {
			if !bytes.Equal(got, bundle.CABundle()) {
				t.Errorf("caBundle is not the Secret's ca.crt:\n%s", got)
			}
		}
	})

	t.Run("the apiserver trusts it: reviews through kubectl", func(t *testing.T) {
		kubectl(t, c, "apply", "-f", filepath.Join(root, "config", "samples", "01-source.yaml"))
		kubectl(t, c, "patch", "pvc", "source", "--subresource=status", "--type=merge",
			"-p", `{"status":{"phase":"Bound","capacity":{"storage":"5Gi"}}}`)
		expectDenied(t, c, "clone-too-small")
		// The mutating webhook too: a restore without apiGroup is defaulted.
		kubectl(t, c, "apply", "-f", filepath.Join(root, "config", "samples", "06-restore-no-apigroup.yaml"))
		got := kubectl(t, c, "get", "pvc", "restore", "-o", "jsonpath={.spec.dataSource.apiGroup}").Stdout
		if got != "snapshot.storage.k8s.io" {
			t.Errorf("restore's apiGroup %q, want snapshot.storage.k8s.io (defaulted by the mutating webhook)", got)
		}
	})

	t.Run("metrics: build info and certificate expiry", func(t *testing.T) {
		_, body := a.get(a.metrics, "/metrics")
		for _, want := range []string{
			`clonegate_build_info{goversion="go`,
			fmt.Sprintf("clonegate_certificate_expiry_timestamp_seconds %g", float64(bundle.Cert.NotAfter.Unix())),
		} {
			if !strings.Contains(body, want) {
				t.Errorf("metrics lack %q", want)
			}
		}
	})

	t.Run("an overwritten caBundle is repaired", func(t *testing.T) {
		kubectl(t, c, "patch", "validatingwebhookconfiguration", "clonegate-validating", "--type=json",
			"-p", `[{"op":"remove","path":"/webhooks/0/clientConfig/caBundle"}]`)
		poll(t, "caBundle restored", 30*time.Second, func() (bool, error) {
			for _, got := range caBundles(t, cl) {
				if !bytes.Equal(got, bundle.CABundle()) {
					return false, nil
				}
			}
			return true, nil
		}, a, b)
	})

	t.Run("rotation: a certificate about to expire is replaced and served without restart", func(t *testing.T) {
		pidA, pidB := a.cmd.Process.Pid, b.cmd.Process.Pid
		// Plant a serving certificate from the same CA that expires in two
		// minutes: well past two thirds of its life, so due at once.
		now := time.Now()
		planted, err := certs.IssueServing(bundle, certs.ServiceIdentity("clonegate-webhook", certNamespace, []string{"127.0.0.1"}), now.Add(-time.Hour), now.Add(2*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		plantedCert, _ := certs.ParseBundle(planted)
		secret.Data = planted
		if err := cl.Update(ctx, secret); err != nil {
			t.Fatal(err)
		}

		var rotated *certs.Bundle
		poll(t, "the Secret to hold a new, long-lived certificate", 30*time.Second, func() (bool, error) {
			s := &corev1.Secret{}
			if err := cl.Get(ctx, secretKey, s); err != nil {
				return false, err
			}
			nb, err := certs.ParseBundle(s.Data)
			if err != nil {
				return false, err
			}
			rotated = nb
			return !nb.Cert.Equal(plantedCert.Cert) && !nb.Cert.Equal(bundle.Cert), nil
		}, a, b)
		if left := time.Until(rotated.Cert.NotAfter); left < 300*24*time.Hour {
			t.Errorf("rotated certificate expires in %s, want about a year", left)
		}
		if !rotated.CA.Equal(bundle.CA) {
			t.Error("a serving-certificate rotation replaced the CA")
		}

		// The apiserver's view: the served certificate verifies against the
		// injected caBundle, for the address the webhooks are called on.
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(caBundles(t, cl)[0])
		for _, r := range []*replica{a, b} {
			poll(t, r.name+" to serve the rotated certificate", 30*time.Second, func() (bool, error) {
				served, err := r.servedCert(roots)
				return err == nil && served.Equal(rotated.Cert), nil
			}, a, b)
		}
		if a.cmd.Process.Pid != pidA || b.cmd.Process.Pid != pidB {
			t.Error("a replica was restarted")
		}
		if !strings.Contains(a.log.String()+b.log.String(), "rotated certificate") {
			t.Error("no replica logged the rotation")
		}
		expectDenied(t, c, "clone-too-small")
	})
}

// TestNotReadyUntilInjected: with no webhook configuration to inject the CA
// into, the server stays
// alive but not ready, and says what is missing.
func TestNotReadyUntilInjected(t *testing.T) {
	c := cluster(t)
	kubectl(t, c, "create", "namespace", certNamespace)
	r := startReplica(t, c, "replica")
	poll(t, "the server to say what is missing", 30*time.Second, func() (bool, error) {
		log := r.log.String()
		return strings.Contains(log, "clonegate-mutating") && strings.Contains(log, "not found: install the webhook configurations"), nil
	}, r)
	if r.ready() {
		t.Error("/readyz is ok with no CA injected")
	}
	if code, _ := r.get(r.probe, "/healthz"); code != 200 {
		t.Errorf("/healthz answered %d, want 200: not ready is not dead", code)
	}
}

// installWebhooks creates config/webhook's two configurations, called at
// addr instead of through the Service, with no caBundle.
func installWebhooks(t *testing.T, cl client.Client, addr string) {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "config", "webhook", "manifests.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	url := func(cc *admissionv1.WebhookClientConfig) {
		u := fmt.Sprintf("https://%s%s", addr, *cc.Service.Path)
		*cc = admissionv1.WebhookClientConfig{URL: &u}
	}
	for _, obj := range []client.Object{&admissionv1.MutatingWebhookConfiguration{}, &admissionv1.ValidatingWebhookConfiguration{}} {
		if err := dec.Decode(obj); err != nil {
			t.Fatal(err)
		}
		switch o := obj.(type) {
		case *admissionv1.MutatingWebhookConfiguration:
			for i := range o.Webhooks {
				url(&o.Webhooks[i].ClientConfig)
			}
		case *admissionv1.ValidatingWebhookConfiguration:
			for i := range o.Webhooks {
				url(&o.Webhooks[i].ClientConfig)
			}
		}
		if err := cl.Create(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
	}
}

// caBundles lists the caBundle of every webhook in both configurations.
func caBundles(t *testing.T, cl client.Client) [][]byte {
	t.Helper()
	ctx := context.Background()
	m := &admissionv1.MutatingWebhookConfiguration{}
	v := &admissionv1.ValidatingWebhookConfiguration{}
	if err := cl.Get(ctx, client.ObjectKey{Name: "clonegate-mutating"}, m); err != nil {
		t.Fatal(err)
	}
	if err := cl.Get(ctx, client.ObjectKey{Name: "clonegate-validating"}, v); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, w := range m.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	for _, w := range v.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	return out
}

// expectDenied applies config/samples/03-clone-too-small.yaml and expects
// clonegate's denial — which reaches kubectl only if the apiserver's TLS
// handshake with clonegate succeeded.
func expectDenied(t *testing.T, c *testenv.Cluster, name string) {
	t.Helper()
	r := c.Kubectl("", "apply", "-f", filepath.Join(root, "config", "samples", "03-clone-too-small.yaml"))
	if r.Code != 1 || !strings.Contains(r.Output(), `spec.resources.requests.storage: Invalid value: "1Gi": must be at least 5Gi`) {
		t.Errorf("kubectl apply %s: exit %d, want 1 with clonegate's size denial:\n%s", name, r.Code, r.Output())
	}
}
