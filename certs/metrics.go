package certs

import (
	"os"

	"github.com/prometheus/client_golang/prometheus"
)

// ExpiryCollector reports when the serving certificate in a file expires. It
// reads the file at each scrape, so it is right in every cert mode (self,
// cert-manager, files) without a hook into whoever writes it; an absent or
// unreadable file reports nothing rather than a misleading zero.
type ExpiryCollector struct {
	path string
	desc *prometheus.Desc
}

// NewExpiryCollector reports on the certificate at path (PEM, first block).
func NewExpiryCollector(path string) *ExpiryCollector {
	return &ExpiryCollector{path: path, desc: prometheus.NewDesc(
		"clonegate_certificate_expiry_timestamp_seconds",
		"When the webhook serving certificate expires (Unix time). Alert well before: self mode rotates at two thirds of its lifetime.",
		nil, nil)}
}

// Describe implements prometheus.Collector.
func (c *ExpiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *ExpiryCollector) Collect(ch chan<- prometheus.Metric) {
	data, err := os.ReadFile(c.path)
	if err != nil {
		return
	}
	certs, err := parseCerts(data)
	if err != nil || len(certs) == 0 {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(certs[0].NotAfter.Unix()))
}
