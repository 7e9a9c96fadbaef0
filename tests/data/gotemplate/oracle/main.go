// Command oracle runs each case of a list through Go's own text/template and
// records what Go did: the output, or the stage (parse or exec) and the error.
//
// It reads the cases as JSON on standard input and writes the table as JSON on
// standard output. regenerate.py beside it builds the input and runs it.
//
// The data given to a template is built from the case's JSON exactly as the
// Python side builds it (tests/test_gotemplate.py), so both engines see the
// same values:
//   - kind "struct": the JSON fills Data, the struct below, which mirrors
//     openfero's model (the Go original's field names and types);
//   - kind "json": a generic value; numbers with '.', 'e' or 'E' are float64,
//     others int; an object is map[string]T and an array []T, where T is
//     string, bool, int or float64 when every element is of that one kind
//     (and string when empty), else interface{};
//   - kind "nil": no data.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"text/template"
)

type Alert struct {
	Labels       map[string]string
	Annotations  map[string]string
	Status       string
	StartsAt     string
	EndsAt       string
	Fingerprint  string
	GeneratorURL string
}

type HookMessage struct {
	Status            string
	Receiver          string
	GroupKey          string
	GroupLabels       map[string]string
	CommonLabels      map[string]string
	CommonAnnotations map[string]string
	ExternalURL       string
}

type Data struct {
	Alert       Alert
	HookMessage HookMessage
	Labels      map[string]string
	Annotations map[string]string
	Status      string
	GroupKey    string
	Fingerprint string
	Receiver    string
	ExternalURL string
}

type dataSpec struct {
	Kind  string          `json:"kind"`
	Value json.RawMessage `json:"value"`
}

type inCase struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Template   string   `json:"template"`
	Data       dataSpec `json:"data"`
	MissingKey string   `json:"missingkey"`
	Differs    string   `json:"differs,omitempty"`
}

type outCase struct {
	inCase
	OK     bool   `json:"ok"`
	Stage  string `json:"stage,omitempty"`
	Output string `json:"output"`
	Error  string `json:"error,omitempty"`
}

// funcs are the extra functions every case may call; the Python side defines
// the same ones.
var funcs = template.FuncMap{
	"upper": strings.ToUpper,
	"add":   func(a, b int) int { return a + b },
	"fail":  func() (string, error) { return "", errors.New("boom") },
}

func basicType(v any) reflect.Type {
	switch v.(type) {
	case string:
		return reflect.TypeOf("")
	case bool:
		return reflect.TypeOf(false)
	case int:
		return reflect.TypeOf(0)
	case float64:
		return reflect.TypeOf(0.0)
	}
	return nil
}

var anyType = reflect.TypeOf((*any)(nil)).Elem()

// elemType is string, bool, int or float64 when every value is of that kind
// (string when there are none), else interface{}.
func elemType(values []any) reflect.Type {
	if len(values) == 0 {
		return reflect.TypeOf("")
	}
	t := basicType(values[0])
	for _, v := range values[1:] {
		if basicType(v) != t {
			return anyType
		}
	}
	if t == nil {
		return anyType
	}
	return t
}

func set(t reflect.Type, v any) reflect.Value {
	if v == nil {
		return reflect.Zero(t)
	}
	return reflect.ValueOf(v)
}

func convert(v any) any {
	switch x := v.(type) {
	case json.Number:
		s := x.String()
		if strings.ContainsAny(s, ".eE") {
			f, err := x.Float64()
			if err != nil {
				panic(err)
			}
			return f
		}
		i, err := x.Int64()
		if err != nil {
			panic(err)
		}
		return int(i)
	case []any:
		values := make([]any, len(x))
		for i, e := range x {
			values[i] = convert(e)
		}
		t := elemType(values)
		s := reflect.MakeSlice(reflect.SliceOf(t), len(values), len(values))
		for i, e := range values {
			s.Index(i).Set(set(t, e))
		}
		return s.Interface()
	case map[string]any:
		values := make([]any, 0, len(x))
		keys := make([]string, 0, len(x))
		for k, e := range x {
			keys = append(keys, k)
			values = append(values, convert(e))
		}
		t := elemType(values)
		m := reflect.MakeMapWithSize(reflect.MapOf(reflect.TypeOf(""), t), len(x))
		for i, k := range keys {
			m.SetMapIndex(reflect.ValueOf(k), set(t, values[i]))
		}
		return m.Interface()
	}
	return v
}

func buildData(spec dataSpec) (any, error) {
	switch spec.Kind {
	case "nil", "":
		return nil, nil
	case "struct":
		var d Data
		if err := json.Unmarshal(spec.Value, &d); err != nil {
			return nil, err
		}
		return d, nil
	case "json":
		dec := json.NewDecoder(bytes.NewReader(spec.Value))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		return convert(v), nil
	}
	return nil, fmt.Errorf("unknown data kind %q", spec.Kind)
}

func run(c inCase) outCase {
	out := outCase{inCase: c}
	data, err := buildData(c.Data)
	if err != nil {
		panic(fmt.Sprintf("case %s: %v", c.ID, err))
	}
	missing := c.MissingKey
	if missing == "" {
		missing = "error"
	}
	t := template.New(c.Name).Funcs(funcs).Option("missingkey=" + missing)
	if _, err := t.Parse(c.Template); err != nil {
		out.Stage, out.Error = "parse", err.Error()
		return out
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		out.Stage, out.Error = "exec", err.Error()
		return out
	}
	out.OK, out.Output = true, b.String()
	return out
}

func main() {
	var cases []inCase
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	results := make([]outCase, 0, len(cases))
	for _, c := range cases {
		results = append(results, run(c))
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(results); err != nil {
		panic(err)
	}
}
