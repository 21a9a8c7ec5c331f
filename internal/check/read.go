package check

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"go.yaml.in/yaml/v3"
)

// Stdin is the path that names standard input.
const Stdin = "-"

// Object is one Kubernetes object found in the manifests, and where.
type Object struct {
	File string // the path as given (or found under a directory given); "-" for stdin
	Doc  int    // 1-based index of the YAML document in File; items of a List share it
	*unstructured.Unstructured
	// node is the object's YAML, its lines those of File; nil when the
	// positions could not be read (Lines then falls back to the document's).
	node *yaml.Node
	pos  Position // the object's start in File
}

// InputError is input that could not be read: a missing file, invalid YAML.
type InputError struct {
	File string
	Doc  int // 0 when the file as a whole could not be read
	Err  error
}

func (e *InputError) Error() string {
	if e.Doc == 0 {
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("%s:%d: %v", e.File, e.Doc, e.Err)
}

func (e *InputError) Unwrap() error { return e.Err }

// manifestExt are the files read from a directory.
var manifestExt = map[string]bool{".yaml": true, ".yml": true, ".json": true}

// Load reads every object from paths: files, directories (recursively, their
// *.yaml, *.yml and *.json files, skipping hidden directories), and "-" for
// stdin. Documents without apiVersion and kind (a kustomization.yaml, Helm
// values) are skipped. All unreadable input is reported, as InputErrors
// joined together.
func Load(paths []string, stdin io.Reader) ([]Object, error) {
	var objs []Object
	var errs []error
	read := func(name string, r io.Reader) {
		o, err := readManifests(name, r)
		objs = append(objs, o...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range paths {
		if p == Stdin {
			read(Stdin, stdin)
			continue
		}
		info, err := os.Stat(p)
		if err != nil {
			errs = append(errs, &InputError{File: p, Err: errors.Unwrap(err)})
			continue
		}
		if !info.IsDir() {
			errs = append(errs, readPath(p, read))
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			switch {
			case err != nil:
				errs = append(errs, &InputError{File: path, Err: errors.Unwrap(err)})
				return nil
			case d.IsDir() && path != p && strings.HasPrefix(d.Name(), "."):
				return fs.SkipDir
			case d.IsDir() || !manifestExt[strings.ToLower(filepath.Ext(path))]:
				return nil
			}
			errs = append(errs, readPath(path, read))
			return nil
		})
		if err != nil {
			errs = append(errs, &InputError{File: p, Err: err})
		}
	}
	return objs, errors.Join(errs...)
}

func readPath(path string, read func(string, io.Reader)) error {
	f, err := os.Open(path)
	if err != nil {
		return &InputError{File: path, Err: errors.Unwrap(err)}
	}
	defer f.Close()
	read(path, f)
	return nil
}

// readManifests splits a stream into YAML documents (JSON is YAML too) and
// returns the objects in them, Lists expanded.
func readManifests(name string, r io.Reader) ([]Object, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, &InputError{File: name, Err: err}
	}
	var objs []Object
	for i, d := range splitDocuments(data) {
		doc := i + 1
		js, err := utilyaml.ToJSON(d.data)
		if err != nil {
			return objs, &InputError{File: name, Doc: doc, Err: fmt.Errorf("invalid YAML: %w", yamlError(err, d.line))}
		}
		var v any
		if err := json.Unmarshal(js, &v); err != nil {
			return objs, &InputError{File: name, Doc: doc, Err: fmt.Errorf("invalid YAML: %w", err)}
		}
		m, ok := v.(map[string]any)
		if !ok {
			continue // empty, or a document that is no object
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetAPIVersion() == "" || u.GetKind() == "" {
			continue
		}
		root := positions(d)
		o := Object{File: name, Doc: doc, Unstructured: u, node: root, pos: positionOf(root, Position{d.line, 1})}
		if !u.IsList() {
			objs = append(objs, o)
			continue
		}
		list, err := u.ToList()
		if err != nil {
			return objs, &InputError{File: name, Doc: doc, Err: err}
		}
		items := child(root, "items")
		for i := range list.Items {
			item := itemAt(items, i)
			objs = append(objs, Object{File: name, Doc: doc, Unstructured: &list.Items[i], node: item, pos: positionOf(item, o.pos)})
		}
	}
	return objs, nil
}

type document struct {
	data []byte
	line int // the file's line the document starts on, from 1
}

// splitDocuments splits a YAML stream at its "---" lines. Documents with
// nothing but blanks (before a leading "---", say) are not counted; those
// with only comments are, as a person reading the file counts them.
func splitDocuments(data []byte) []document {
	var docs []document
	var cur []byte
	start := 1
	flush := func() {
		if len(bytes.TrimSpace(cur)) > 0 {
			docs = append(docs, document{data: cur, line: start})
		}
		cur = nil
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, l := range lines {
		t := bytes.TrimRight(l, " \t\r\n")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			flush()
			start = i + 2
			continue
		}
		cur = append(cur, l...)
	}
	flush()
	return docs
}

var yamlLine = regexp.MustCompile(`^line (\d+): `)

// yamlError drops the "error converting YAML to JSON: yaml: " prefixes and
// turns the document's line number into the file's.
func yamlError(err error, first int) error {
	msg := err.Error()
	for _, p := range []string{"error converting YAML to JSON: ", "yaml: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		msg = fmt.Sprintf("line %d: %s", n+first-1, msg[len(m[0]):])
	}
	return errors.New(msg)
}

// decode turns an object into a typed one through its JSON.
func decode(o Object, into any) error {
	data, err := json.Marshal(o.Object)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(into); err != nil {
		return &InputError{File: o.File, Doc: o.Doc, Err: fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)}
	}
	return nil
}

// nested returns the object at path inside o, if there is one.
func nested(o Object, path []string) (Object, bool) {
	m, found, err := unstructured.NestedMap(o.Object, path...)
	if !found || err != nil {
		return Object{}, false
	}
	return Object{File: o.File, Doc: o.Doc, Unstructured: &unstructured.Unstructured{Object: m}}, true
}
