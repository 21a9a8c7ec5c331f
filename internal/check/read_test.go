package check

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReadManifestsCountsDocuments(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string // doc kind/name
	}{
		{"a leading separator opens no document", "---\nkind: A\napiVersion: v1\nmetadata: {name: a}\n", []string{"1 A/a"}},
		{"comment-only documents count, blank ones do not",
			"# header\n---\nkind: A\napiVersion: v1\nmetadata: {name: a}\n---\n\n---\nkind: B\napiVersion: v1\nmetadata: {name: b}\n",
			[]string{"2 A/a", "3 B/b"}},
		{"documents without apiVersion or kind are skipped", "resources: [a.yaml]\n---\nkind: A\napiVersion: v1\nmetadata: {name: a}\n", []string{"2 A/a"}},
		{"List items share the List's document", "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: A, metadata: {name: a}}\n- {apiVersion: v1, kind: B, metadata: {name: b}}\n", []string{"1 A/a", "1 B/b"}},
		{"a separator with a comment still separates", "kind: A\napiVersion: v1\nmetadata: {name: a}\n--- # next\nkind: B\napiVersion: v1\nmetadata: {name: b}\n", []string{"1 A/a", "2 B/b"}},
		{"JSON is read as one document", `{"apiVersion": "v1", "kind": "A", "metadata": {"name": "a"}}`, []string{"1 A/a"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			objs, err := readManifests("f", strings.NewReader(c.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, strings.Join([]string{itoa(o.Doc), o.GetKind() + "/" + o.GetName()}, " "))
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadManifestsNamesTheFileLine(t *testing.T) {
	_, err := readManifests("f.yaml", strings.NewReader("kind: A\napiVersion: v1\n---\n# c\nkind: B\n  bad: [\n"))
	want := "f.yaml:2: invalid YAML: line 6: mapping values are not allowed in this context"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %v, want one starting %q", err, want)
	}
}

func itoa(i int) string { return string(rune('0' + i)) }
