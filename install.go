package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/clonegate/clonegate/certs"
)

// Cert modes: where the serving certificate comes from.
const (
	certModeFiles       = "files"        // --cert-dir, kept by whoever deploys clonegate
	certModeSelf        = "self"         // the certs package: Secret, caBundle, rotation
	certModeCertManager = "cert-manager" // --cert-dir mounted from a cert-manager Certificate; cainjector sets caBundle
)

// certOptions are the flags of --cert-mode=self.
type certOptions struct {
	mode              string
	secretName        string
	namespace         string
	serviceName       string
	mutatingWebhook   string
	validatingWebhook string
	extraSANs         string
	checkInterval     time.Duration
}

func (c *certOptions) bind(fs *pflag.FlagSet) {
	fs.StringVar(&c.mode, "cert-mode", certModeFiles, "where the serving certificate comes from: files (read --cert-dir), self (create, rotate and inject it: see --cert-secret-name), or cert-manager (--cert-dir mounted from a cert-manager Certificate)")
	fs.StringVar(&c.secretName, "cert-secret-name", "clonegate-webhook-cert", "self mode: the Secret holding the CA and serving certificate")
	fs.StringVar(&c.namespace, "cert-namespace", os.Getenv("POD_NAMESPACE"), "self mode: namespace of the Secret and the Service (default: $POD_NAMESPACE)")
	fs.StringVar(&c.serviceName, "service-name", "clonegate-webhook", "self mode: the webhook Service; the certificate names <service>.<namespace>.svc and .svc.cluster.local")
	fs.StringVar(&c.mutatingWebhook, "mutating-webhook-config", "clonegate-mutating", "self mode: MutatingWebhookConfiguration to inject the CA into")
	fs.StringVar(&c.validatingWebhook, "validating-webhook-config", "clonegate-validating", "self mode: ValidatingWebhookConfiguration to inject the CA into")
	fs.StringVar(&c.extraSANs, "cert-extra-sans", "", "self mode: comma-separated extra DNS names or IP addresses for the serving certificate")
	fs.DurationVar(&c.checkInterval, "cert-check-interval", time.Minute, "self mode: how often the Secret, files and caBundles are reconciled (repairs an overwritten caBundle, picks up another replica's rotation)")
}

// setup prepares the certificate source and returns the TLS options the
// webhook server needs and a function that adds the rest to the manager
// (the certs runnable and readiness check, the build-info and certificate
// expiry metrics).
func (c *certOptions) setup(cfg *rest.Config, certDir string) ([]func(*tls.Config), func(manager.Manager) error, error) {
	observe := func(manager.Manager) error {
		return errors.Join(
			metrics.Registry.Register(buildInfo()),
			metrics.Registry.Register(certs.NewExpiryCollector(filepath.Join(certDir, certs.KeyCert))),
		)
	}
	switch c.mode {
	case certModeFiles, certModeCertManager:
		return nil, observe, nil
	case certModeSelf:
	default:
		return nil, nil, fmt.Errorf("--cert-mode=%q: must be files, self or cert-manager", c.mode)
	}
	if c.namespace == "" {
		return nil, nil, errors.New("--cert-mode=self needs a namespace for its Secret: set --cert-namespace, or POD_NAMESPACE (the Deployment in config/manager sets it from the downward API)")
	}
	cl, err := certs.NewClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	var extra []string
	for _, s := range strings.Split(c.extraSANs, ",") {
		if s = strings.TrimSpace(s); s != "" {
			extra = append(extra, s)
		}
	}
	m := &certs.Manager{
		Client:            cl,
		Namespace:         c.namespace,
		SecretName:        c.secretName,
		Identity:          certs.ServiceIdentity(c.serviceName, c.namespace, extra),
		CertDir:           certDir,
		MutatingWebhook:   c.mutatingWebhook,
		ValidatingWebhook: c.validatingWebhook,
		Interval:          c.checkInterval,
	}
	return []func(*tls.Config){m.TLSOption}, func(mgr manager.Manager) error {
		return errors.Join(observe(mgr), m.SetupWithManager(mgr))
	}, nil
}

// buildInfo is clonegate_build_info{version,goversion} 1, so dashboards can
// tell which build is answering.
func buildInfo() prometheus.Collector {
	goVersion := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		goVersion = info.GoVersion
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "clonegate_build_info",
		Help: "The running clonegate build: always 1, labelled with its version and Go version.",
	}, []string{"version", "goversion"})
	g.WithLabelValues(version, goVersion).Set(1)
	return g
}
