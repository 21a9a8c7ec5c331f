package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clonegate/clonegate/internal/testenv"
	"github.com/clonegate/clonegate/webhook"
)

// metricSeries is every clonegate_* sample line the server exports.
func metricSeries(t *testing.T, e *env) []string {
	t.Helper()
	resp, err := http.Get(e.metricsURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "clonegate_") {
			out = append(out, l)
		}
	}
	return out
}

// Whoever reaches the webhook port cannot grow the metrics: reviews with
// made-up operations and kinds, on every webhook path, add no series. (Each
// series is kept for the life of the process: a label taken from the request
// let a pod on the network exhaust a replica's memory, 4 reviews at a time.)
func TestHostileReviewsAddNoMetricSeries(t *testing.T) {
	e := newEnv(t, testenv.Options{})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: servingRoots(e)}}}
	paths := map[string]string{
		webhook.MutatePath:              `{"group":"","version":"v1","kind":"PersistentVolumeClaim"}`,
		webhook.ValidatePath:            `{"group":"","version":"v1","kind":"PersistentVolumeClaim"}`,
		webhook.ValidateStatefulSetPath: `{"group":"apps","version":"v1","kind":"StatefulSet"}`,
		webhook.ValidatePodPath:         `{"group":"","version":"v1","kind":"Pod"}`,
	}
	hostile := func(round int) {
		t.Helper()
		for path, kind := range paths {
			mark := fmt.Sprintf("hostile%d%s", round, strings.Repeat("x", 4096))
			for _, body := range []string{
				// A made-up operation.
				fmt.Sprintf(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":%s,"namespace":"default","operation":%q,"object":{}}}`, kind, mark),
				// A made-up kind.
				fmt.Sprintf(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{"group":%q,"version":%[1]q,"kind":%[1]q},"namespace":"default","operation":"CREATE","object":{}}}`, mark),
			} {
				resp, err := client.Post("https://"+webhookAddr(e)+path, "application/json", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}
	hostile(0)
	before := metricSeries(t, e)
	for round := 1; round <= 10; round++ {
		hostile(round)
	}
	after := metricSeries(t, e)
	for _, l := range after {
		if strings.Contains(l, "hostile") {
			t.Errorf("a series labelled from the request: %.120s…", l)
		}
	}
	if len(after) != len(before) {
		t.Errorf("%d metric series after 80 hostile reviews, %d after the first 8: want no growth", len(after), len(before))
	}
}
