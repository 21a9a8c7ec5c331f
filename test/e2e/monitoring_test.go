package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every clonegate metric the alerts (config/prometheus/prometheusrule.yaml)
// and the dashboard (config/prometheus/dashboard.json) query is one a
// running clonegate really exports, so a renamed metric cannot leave an
// alert silently empty.
func TestMonitoringQueriesNameExportedMetrics(t *testing.T) {
	e := shared["gate-off"]
	ns := e.namespace(t)
	e.source(t, ns, "src", sourceOpts{request: "5Gi", capacity: "5Gi"})
	expect(t, e.apply(t, ns, cloneYAML("small", "src", "1Gi")), 1, validateDenied) // a review, a finding, a latency
	resp, err := http.Get("http://" + e.Server.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	exported := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(name)
			exported[f[0]] = true
			if len(f) > 1 && f[1] == "histogram" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					exported[f[0]+s] = true
				}
			}
		}
	}
	metricName := regexp.MustCompile(`clonegate_[a-z0-9_]+`)
	for _, file := range []string{"prometheusrule.yaml", "dashboard.json"} {
		data, err := os.ReadFile(filepath.Join(root, "config", "prometheus", file))
		if err != nil {
			t.Fatal(err)
		}
		names := metricName.FindAllString(string(data), -1)
		if len(names) == 0 {
			t.Errorf("%s queries no clonegate metric", file)
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("%s queries %s, which clonegate does not export", file, n)
			}
		}
	}
}
