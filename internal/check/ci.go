package check

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/clonegate/clonegate/webhook/rules"
)

// RuleDoc is a rule's row in the README's rules table, in Markdown.
type RuleDoc struct {
	Default  string // deny, warn, defaults + warning
	Checks   string // what it checks
	CaughtBy string // what catches the mistake without clonegate
}

var ruleRow = regexp.MustCompile("^\\| `([a-z0-9-]+)` \\|(.*)\\|\\s*$")

// ParseRuleDocs reads the rows of the rules table of clonegate's README
// (| `rule` | default | what it checks | otherwise caught by |), so SARIF
// describes each rule in the README's words.
func ParseRuleDocs(readme []byte) map[rules.Rule]RuleDoc {
	docs := map[rules.Rule]RuleDoc{}
	sc := bufio.NewScanner(bytes.NewReader(readme))
	for sc.Scan() {
		m := ruleRow.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		cells := strings.Split(m[2], " | ")
		if len(cells) != 3 {
			continue
		}
		docs[rules.Rule(m[1])] = RuleDoc{Default: strings.TrimSpace(cells[0]), Checks: strings.TrimSpace(cells[1]), CaughtBy: strings.TrimSpace(cells[2])}
	}
	return docs
}

// plainText drops the Markdown of a table cell: `code` and **bold**.
func plainText(md string) string {
	return strings.NewReplacer("`", "", "**", "").Replace(md)
}

// level is the SARIF (and GitHub) word for an action.
func level(a rules.Action) string {
	switch a {
	case rules.Deny:
		return "error"
	case rules.Warn:
		return "warning"
	}
	return "none"
}

// SARIF 2.1.0, the parts clonegate fills in.
type (
	sarifLog struct {
		Schema  string     `json:"$schema"`
		Version string     `json:"version"`
		Runs    []sarifRun `json:"runs"`
	}
	sarifRun struct {
		Tool    sarifTool     `json:"tool"`
		Results []sarifResult `json:"results"`
	}
	sarifTool struct {
		Driver sarifDriver `json:"driver"`
	}
	sarifDriver struct {
		Name           string      `json:"name"`
		Version        string      `json:"version,omitempty"`
		InformationURI string      `json:"informationUri"`
		Rules          []sarifRule `json:"rules"`
	}
	sarifRule struct {
		ID                   string            `json:"id"`
		ShortDescription     sarifText         `json:"shortDescription"`
		FullDescription      sarifText         `json:"fullDescription"`
		Help                 sarifText         `json:"help"`
		HelpURI              string            `json:"helpUri"`
		DefaultConfiguration sarifRuleDefaults `json:"defaultConfiguration"`
	}
	sarifRuleDefaults struct {
		Level string `json:"level"`
	}
	sarifText struct {
		Text     string `json:"text"`
		Markdown string `json:"markdown,omitempty"`
	}
	sarifResult struct {
		RuleID    string          `json:"ruleId"`
		RuleIndex int             `json:"ruleIndex"`
		Level     string          `json:"level"`
		Message   sarifText       `json:"message"`
		Locations []sarifLocation `json:"locations,omitempty"`
	}
	sarifLocation struct {
		PhysicalLocation sarifPhysicalLocation `json:"physicalLocation"`
	}
	sarifPhysicalLocation struct {
		ArtifactLocation sarifArtifact `json:"artifactLocation"`
		Region           sarifRegion   `json:"region"`
	}
	sarifArtifact struct {
		URI string `json:"uri"`
	}
	sarifRegion struct {
		StartLine   int `json:"startLine"`
		StartColumn int `json:"startColumn,omitempty"`
	}
)

// Tool is what SARIF says about clonegate itself.
type Tool struct {
	Version  string
	RuleDocs map[rules.Rule]RuleDoc // from ParseRuleDocs
}

const (
	informationURI = "https://github.com/clonegate/clonegate"
	rulesURI       = informationURI + "#rules"
	sarifSchema    = "https://json.schemastore.org/sarif-2.1.0.json"
)

// WriteSARIF prints the findings as a SARIF 2.1.0 log for code scanning
// (GitHub's upload-sarif): every rule with its README description and
// default level, one result per finding at its file and line. Findings
// read from stdin have no file to point at, and so no location.
func WriteSARIF(w io.Writer, findings []Finding, tool Tool) error {
	ids := []rules.Rule{rules.RuleAPIGroupDefault}
	for r := range rules.DefaultActions {
		ids = append(ids, r)
	}
	for _, f := range findings {
		ids = append(ids, f.Rule)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)

	run := sarifRun{Tool: sarifTool{Driver: sarifDriver{Name: "clonegate", Version: tool.Version, InformationURI: informationURI}}, Results: []sarifResult{}}
	index := map[rules.Rule]int{}
	for i, id := range ids {
		index[id] = i
		def := rules.Warn // api-group-default: always a warning
		if a, ok := rules.DefaultActions[id]; ok {
			def = a
		}
		doc, ok := tool.RuleDocs[id]
		if !ok {
			doc = RuleDoc{Checks: string(id)}
		}
		full := doc.Checks
		if doc.CaughtBy != "" {
			full += ". Otherwise caught by: " + doc.CaughtBy + "."
		}
		run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, sarifRule{
			ID:                   string(id),
			ShortDescription:     sarifText{Text: plainText(doc.Checks)},
			FullDescription:      sarifText{Text: plainText(full), Markdown: full},
			Help:                 sarifText{Text: plainText(full), Markdown: full},
			HelpURI:              rulesURI,
			DefaultConfiguration: sarifRuleDefaults{Level: level(def)},
		})
	}
	for _, f := range findings {
		r := sarifResult{
			RuleID:    string(f.Rule),
			RuleIndex: index[f.Rule],
			Level:     level(f.Action),
			Message:   sarifText{Text: fmt.Sprintf("%s: %s: %s", f.subject(), f.Field, f.Message)},
		}
		if f.File != Stdin {
			r.Locations = []sarifLocation{{PhysicalLocation: sarifPhysicalLocation{
				ArtifactLocation: sarifArtifact{URI: filepath.ToSlash(f.File)},
				Region:           sarifRegion{StartLine: max(f.Line, 1), StartColumn: f.Column},
			}}}
		}
		run.Results = append(run.Results, r)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{Schema: sarifSchema, Version: "2.1.0", Runs: []sarifRun{run}})
}

// WriteGitHub prints the findings as GitHub Actions workflow commands, which
// the runner shows as annotations on the pull request's files:
//
//	::error file=path,line=N,col=M,title=clonegate clone-size::Kind ns/name: field: message
//	::warning file=path,line=N,title=clonegate source-not-bound::…
func WriteGitHub(w io.Writer, findings []Finding) error {
	for _, f := range findings {
		props := []string{}
		if f.File != Stdin {
			props = append(props, "file="+escapeProperty(filepath.ToSlash(f.File)), fmt.Sprintf("line=%d", f.Line))
			if f.Column > 0 {
				props = append(props, fmt.Sprintf("col=%d", f.Column))
			}
		}
		props = append(props, "title="+escapeProperty("clonegate "+string(f.Rule)))
		if _, err := fmt.Fprintf(w, "::%s %s::%s\n", level(f.Action), strings.Join(props, ","),
			escapeData(fmt.Sprintf("%s: %s: %s", f.subject(), f.Field, f.Message))); err != nil {
			return err
		}
	}
	return nil
}

// The escaping of the Actions runner (toolkit's command.ts).
var (
	dataEscaper     = strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A")
	propertyEscaper = strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C")
)

func escapeData(s string) string     { return dataEscaper.Replace(s) }
func escapeProperty(s string) string { return propertyEscaper.Replace(s) }

// JUnit XML, as CI systems that show test reports read it.
type (
	junitSuites struct {
		XMLName  xml.Name     `xml:"testsuites"`
		Name     string       `xml:"name,attr"`
		Tests    int          `xml:"tests,attr"`
		Failures int          `xml:"failures,attr"`
		Suites   []junitSuite `xml:"testsuite"`
	}
	junitSuite struct {
		Name     string      `xml:"name,attr"`
		Tests    int         `xml:"tests,attr"`
		Failures int         `xml:"failures,attr"`
		Errors   int         `xml:"errors,attr"`
		Skipped  int         `xml:"skipped,attr"`
		Cases    []junitCase `xml:"testcase"`
	}
	junitCase struct {
		Name      string        `xml:"name,attr"`
		Classname string        `xml:"classname,attr"`
		File      string        `xml:"file,attr,omitempty"`
		Line      int           `xml:"line,attr,omitempty"`
		Failure   *junitFailure `xml:"failure,omitempty"`
		SystemOut string        `xml:"system-out,omitempty"`
	}
	junitFailure struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr"`
		Text    string `xml:",chardata"`
	}
)

// WriteJUnit prints a JUnit XML report: one test case per object with a
// claim that was judged (classname its file), failed by its denials; its
// warnings are the case's system-out.
func WriteJUnit(w io.Writer, r *Report) error {
	type id struct{ file, kind, namespace, name string }
	byObject := map[id][]Finding{}
	for _, f := range r.Findings {
		k := id{f.File, f.Kind, f.Namespace, f.Name}
		byObject[k] = append(byObject[k], f)
	}
	suite := junitSuite{Name: "clonegate check"}
	for _, s := range r.Judged {
		c := junitCase{Name: fmt.Sprintf("%s %s/%s", s.Kind, s.Namespace, s.Name), Classname: s.File, Line: s.Line}
		if s.File != Stdin {
			c.File = filepath.ToSlash(s.File)
		}
		var denied, warned []string
		var firstRule rules.Rule
		for _, f := range byObject[id{s.File, s.Kind, s.Namespace, s.Name}] {
			line := fmt.Sprintf("%s:%d [%s] %s: %s", f.File, f.Line, f.Rule, f.Field, f.Message)
			if f.Action == rules.Deny {
				if denied == nil {
					firstRule = f.Rule
				}
				denied = append(denied, line)
			} else {
				warned = append(warned, "warning "+line)
			}
		}
		if denied != nil {
			suite.Failures++
			c.Failure = &junitFailure{Message: fmt.Sprintf("denied by %d %s", len(denied), plural(len(denied), "rule", "rules")),
				Type: string(firstRule), Text: strings.Join(denied, "\n")}
		}
		c.SystemOut = strings.Join(warned, "\n")
		suite.Cases = append(suite.Cases, c)
	}
	suite.Tests = len(suite.Cases)
	out := junitSuites{Name: "clonegate check", Tests: suite.Tests, Failures: suite.Failures, Suites: []junitSuite{suite}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
