package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// Keys of the data objects the relay and the collector decode. encoding/json
// matches keys without regard to case and keeps the last of a repeated key,
// so a guest could send {"hostname":"a","HostName":"b"} and have the relay's
// check and the collector's reading disagree. checkKeys refuses both before
// encoding/json sees the object.
var (
	helloKeys     = jsonKeys(reflect.TypeFor[Hello]())
	heartbeatKeys = jsonKeys(reflect.TypeFor[Heartbeat]())
	resumeKeys    = jsonKeys(reflect.TypeFor[Resume]())
)

func jsonKeys(t reflect.Type) map[string]bool {
	keys := make(map[string]bool, t.NumField())
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		keys[name] = true
	}
	return keys
}

// checkKeys accepts one JSON object whose keys are all in allowed, spelt
// exactly, each once (or null), and whose nested objects repeat no key either.
func checkKeys(data []byte, allowed map[string]bool) error {
	if bytes.Equal(data, []byte("null")) {
		return nil // decodes as the empty object, as it always has
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	if err := walkObject(dec, allowed, 1); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the object")
	}
	return nil
}

// walkObject reads the rest of an object whose '{' was read. allowed, when
// not nil, lists the keys it may have. The envelope scanner has already
// bounded the nesting, so recursion here is shallow.
func walkObject(dec *json.Decoder, allowed map[string]bool, depth int) error {
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string) // a key inside an object is always a string
		if allowed != nil && !allowed[key] {
			return fmt.Errorf("unknown key %q", clip(key))
		}
		if seen[key] {
			return fmt.Errorf("key %q given twice", clip(key))
		}
		seen[key] = true
		if err := walkValue(dec, depth); err != nil {
			return err
		}
	}
	_, err := dec.Token() // '}'
	return err
}

func walkValue(dec *json.Decoder, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("more than %d nested arrays and objects", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		return walkObject(dec, nil, depth+1)
	case json.Delim('['):
		for dec.More() {
			if err := walkValue(dec, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ']'
	}
	return err
}
