package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	offline "github.com/clonegate/clonegate/internal/check"
	"github.com/clonegate/clonegate/webhook/rules"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestCheckFormats")

// Each output format of the same findings (denials and warnings, over two
// files, one with several documents), against a golden file:
// go test -run TestCheckFormats -update rewrites them.
func TestCheckFormats(t *testing.T) {
	for _, format := range offline.Formats {
		t.Run(format, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run([]string{"check", "-o", format, "-f", td + "snapshot-no-group.yaml", td + "statefulset.yaml"}, nil, &stdout, &stderr)
			if code != 1 {
				t.Fatalf("exit code %d, want 1; stderr:\n%s", code, stderr.String())
			}
			got := stdout.Bytes()
			if format == "sarif" {
				got = withoutRuleTable(t, got)
			}
			golden := filepath.Join(td, "golden", "check."+format)
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("-o %s (-%s +got):\n%s", format, golden, diff)
			}
		})
	}
}

// withoutRuleTable drops the rules, which come from the README's table
// (TestSARIFStructure checks them), and the results' indexes into them, so
// that a new rule or a reworded README does not change the golden file.
func withoutRuleTable(t *testing.T, sarif []byte) []byte {
	var log map[string]any
	if err := json.Unmarshal(sarif, &log); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, sarif)
	}
	run := log["runs"].([]any)[0].(map[string]any)
	delete(run["tool"].(map[string]any)["driver"].(map[string]any), "rules")
	for _, r := range run["results"].([]any) {
		delete(r.(map[string]any), "ruleIndex")
	}
	out, err := json.MarshalIndent(log, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

// The SARIF log has what SARIF 2.1.0 requires of each object clonegate
// writes (sarifLog, run, tool, toolComponent, reportingDescriptor, result,
// message, location, physicalLocation, artifactLocation, region), and what
// GitHub code scanning reads: every rule with a description and a level,
// each result pointing at its rule by id and index, at a file and a line.
func TestSARIFStructure(t *testing.T) {
	var stdout, stderr bytes.Buffer
	run([]string{"check", "-o", "sarif", td + "snapshot-no-group.yaml", td + "statefulset.yaml", td + "undersized"}, nil, &stdout, &stderr)
	var log map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &log); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout.String())
	}
	must := func(what string, v any, ok bool) {
		t.Helper()
		if !ok {
			t.Fatalf("%s: missing or of the wrong type: %#v", what, v)
		}
	}
	obj := func(m map[string]any, key, what string) map[string]any {
		t.Helper()
		v, ok := m[key].(map[string]any)
		must(what+"."+key, m[key], ok)
		return v
	}
	arr := func(m map[string]any, key, what string) []any {
		t.Helper()
		v, ok := m[key].([]any)
		must(what+"."+key, m[key], ok)
		return v
	}
	str := func(m map[string]any, key, what string) string {
		t.Helper()
		v, ok := m[key].(string)
		must(what+"."+key, m[key], ok && v != "")
		return v
	}
	message := func(m map[string]any, key, what string) {
		t.Helper()
		str(obj(m, key, what), "text", what+"."+key) // §3.11.8: text (or id)
	}
	levels := []string{"none", "note", "warning", "error"} // §3.27.10

	if v := str(log, "version", "sarifLog"); v != "2.1.0" {
		t.Errorf("version %q, want 2.1.0", v)
	}
	str(log, "$schema", "sarifLog")
	runs := arr(log, "runs", "sarifLog")
	if len(runs) != 1 {
		t.Fatalf("%d runs, want 1", len(runs))
	}
	runObj := runs[0].(map[string]any)
	driver := obj(obj(runObj, "tool", "run"), "driver", "tool")
	str(driver, "name", "driver")
	var ids []string
	for i, r := range arr(driver, "rules", "driver") {
		rule := r.(map[string]any)
		what := "rules[" + string(rune('0'+i)) + "]"
		ids = append(ids, str(rule, "id", what))
		message(rule, "shortDescription", what)
		message(rule, "fullDescription", what)
		if l := str(obj(rule, "defaultConfiguration", what), "level", what); !slices.Contains(levels, l) {
			t.Errorf("%s: level %q", what, l)
		}
		if d := rule["shortDescription"].(map[string]any)["text"]; d == rule["id"] {
			t.Errorf("rule %s has no description from the README", rule["id"])
		}
	}
	for r := range rules.DefaultActions {
		if !slices.Contains(ids, string(r)) {
			t.Errorf("rule %s is missing from the SARIF rules", r)
		}
	}
	results := arr(runObj, "results", "run")
	if len(results) == 0 {
		t.Fatal("no results")
	}
	for _, r := range results {
		res := r.(map[string]any)
		id := str(res, "ruleId", "result")
		if i, ok := res["ruleIndex"].(float64); !ok || int(i) >= len(ids) || ids[int(i)] != id {
			t.Errorf("result %s: ruleIndex %v does not point at its rule", id, res["ruleIndex"])
		}
		if l := str(res, "level", "result"); l != "error" && l != "warning" {
			t.Errorf("result %s: level %q", id, l)
		}
		message(res, "message", "result")
		locs := arr(res, "locations", "result")
		phys := obj(locs[0].(map[string]any), "physicalLocation", "location")
		if uri := str(obj(phys, "artifactLocation", "physicalLocation"), "uri", "artifactLocation"); !strings.HasPrefix(uri, td) {
			t.Errorf("result %s: uri %q, want a path under %s", id, uri, td)
		}
		if line, ok := obj(phys, "region", "physicalLocation")["startLine"].(float64); !ok || line < 1 {
			t.Errorf("result %s: startLine %v", id, line)
		}
	}
}

// GitHub refuses SARIF results without a file: from stdin, clonegate says so.
func TestSARIFFromStdinWarns(t *testing.T) {
	var stdout, stderr bytes.Buffer
	undersized, _ := os.ReadFile(td + "undersized/clone.yaml")
	run([]string{"check", "-o", "sarif", "-f", "-", "-f", td + "good/source.yaml"}, strings.NewReader(string(undersized)), &stdout, &stderr)
	if want := "clonegate check: 2 findings from stdin have no file to point at"; !strings.HasPrefix(stderr.String(), want) {
		t.Errorf("stderr %q, want it to start with %q", stderr.String(), want)
	}
	if strings.Contains(stdout.String(), `"locations"`) {
		t.Errorf("results from stdin have locations:\n%s", stdout.String())
	}
}

// The README's rules table describes every rule, for SARIF.
func TestREADMEDescribesEveryRule(t *testing.T) {
	docs := offline.ParseRuleDocs(readme)
	for r := range rules.DefaultActions {
		if d, ok := docs[r]; !ok || d.Checks == "" {
			t.Errorf("README.md's rules table has no row for %s", r)
		}
	}
	if _, ok := docs[rules.RuleAPIGroupDefault]; !ok {
		t.Errorf("README.md's rules table has no row for %s", rules.RuleAPIGroupDefault)
	}
}

func TestGitHubAnnotations(t *testing.T) {
	var stdout, stderr bytes.Buffer
	undersized, _ := os.ReadFile(td + "undersized/clone.yaml")
	code := run([]string{"check", "-o", "github", "-f", "-", "-f", td + "good/source.yaml"}, strings.NewReader(string(undersized)), &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	// From stdin there is no file to annotate: the annotation stands alone.
	want := "::error title=clonegate clone-size::PersistentVolumeClaim default/small: spec.resources.requests.storage: Invalid value: \"1Gi\": must be at least 5Gi, the size of source PersistentVolumeClaim \"src\"; request 5Gi or more\n"
	if !strings.HasSuffix(stdout.String(), want) {
		t.Errorf("stdout:\n%s\nwant it to end with:\n%s", stdout.String(), want)
	}
	if got := offlineEscape("a%b\nc"); got != "a%25b%0Ac" {
		t.Errorf("escaped %q", got)
	}
}

func offlineEscape(s string) string {
	var b bytes.Buffer
	_ = offline.WriteGitHub(&b, []offline.Finding{{File: "-", Rule: "r", Action: rules.Warn, Kind: "K", Namespace: "n", Name: "x", Field: "f", Message: s}})
	_, msg, _ := strings.Cut(strings.TrimSuffix(b.String(), "\n"), "::K n/x: f: ")
	return msg
}

func TestJUnitReport(t *testing.T) {
	var stdout, stderr bytes.Buffer
	run([]string{"check", "-o", "junit", td + "good", td + "undersized"}, nil, &stdout, &stderr)
	var suites struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suite    []struct {
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Type string `xml:"type,attr"`
				} `xml:"failure"`
				SystemOut string `xml:"system-out"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(stdout.Bytes(), &suites); err != nil {
		t.Fatalf("not XML: %v\n%s", err, stdout.String())
	}
	if suites.Tests != 2 || suites.Failures != 1 || len(suites.Suite) != 1 || len(suites.Suite[0].Cases) != 2 {
		t.Fatalf("want 2 tests, 1 failure:\n%s", stdout.String())
	}
	good, small := suites.Suite[0].Cases[0], suites.Suite[0].Cases[1]
	if good.Failure != nil || !strings.Contains(good.SystemOut, "source-not-bound") {
		t.Errorf("the good clone fails, or lacks its warning: %+v", good)
	}
	if small.Failure == nil || small.Failure.Type != "clone-size" {
		t.Errorf("the small clone does not fail by clone-size: %+v", small)
	}
}
