package readmecheck

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Block is one ```go block of a Markdown file.
type Block struct {
	// Line is the number (from 1) of the block's first line of code.
	Line int
	// Code is the block's text, fences excluded.
	Code string
}

// IsFile reports whether the block is a Go file of its own (it starts with
// a package clause) rather than a fragment of a function body.
func (b Block) IsFile() bool {
	for line := range strings.Lines(b.Code) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "//") {
			continue
		}
		return strings.HasPrefix(line, "package ")
	}
	return false
}

// Blocks returns the ```go blocks of a Markdown text, in order. Other
// fenced blocks are skipped; a ```go block with no closing fence is an
// error.
func Blocks(markdown []byte) ([]Block, error) {
	var (
		blocks []Block
		code   strings.Builder
		fence  string // the open fence, "" outside a block
		isGo   bool
		start  int
	)
	sc := bufio.NewScanner(bytes.NewReader(markdown))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if fence == "" {
			if f := fenceOf(trimmed); f != "" {
				fence, start = f, n
				info := strings.Fields(strings.TrimPrefix(trimmed, f))
				isGo = len(info) > 0 && info[0] == "go"
				code.Reset()
			}
			continue
		}
		if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
			if isGo {
				blocks = append(blocks, Block{Line: start + 1, Code: code.String()})
			}
			fence = ""
			continue
		}
		code.WriteString(line)
		code.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if fence != "" && isGo {
		return nil, fmt.Errorf("line %d: a go block with no closing fence", start)
	}
	return blocks, nil
}

// fenceOf returns the fence a line opens (``` or ~~~, or longer), or "".
func fenceOf(line string) string {
	for _, c := range []string{"`", "~"} {
		n := len(line) - len(strings.TrimLeft(line, c))
		if n >= 3 {
			return strings.Repeat(c, n)
		}
	}
	return ""
}

// Imports are the packages a fragment may use by name without importing
// them: Check adds the import of each one a fragment names.
var Imports = map[string]string{
	"context":     "context",
	"errors":      "errors",
	"fmt":         "fmt",
	"http":        "net/http",
	"log":         "log",
	"os":          "os",
	"slog":        "log/slog",
	"time":        "time",
	"prometheus":  "github.com/prometheus/client_golang/prometheus",
	"promhttp":    "github.com/prometheus/client_golang/prometheus/promhttp",
	"rueidis":     "github.com/redis/rueidis",
	"tiered":      "github.com/tiercache/tiercache/tiered",
	"prommetrics": "github.com/tiercache/tiercache/tiered/prommetrics",
	"tieredotel":  "github.com/tiercache/tiercache/tiered/tieredotel",
	"warmup":      "github.com/tiercache/tiercache/warmup",
	"writebehind": "github.com/tiercache/tiercache/writebehind",
}

// Options says what Check compiles.
type Options struct {
	// Markdown is the file whose go blocks are compiled.
	Markdown string
	// Module is the directory of the module the blocks import (its nested
	// modules are found below it).
	Module string
	// Prelude is a file of package snippets compiled with the fragments:
	// the declarations they assume. Optional.
	Prelude string
}

// snippetsModule is the throwaway module's path; its package is snippets.
const snippetsModule = "readmecheck.snippets"

// Check compiles (go build) and vets (go vet) every go block of
// opts.Markdown. Its error holds the go command's report, with the
// positions of the Markdown file: a block that does not compile fails the
// check.
func Check(ctx context.Context, opts Options) error {
	md, err := filepath.Abs(opts.Markdown)
	if err != nil {
		return err
	}
	root, err := filepath.Abs(opts.Module)
	if err != nil {
		return err
	}
	name := opts.Markdown // in errors: relative to the module when inside it
	if rel, err := filepath.Rel(root, md); err == nil && !strings.HasPrefix(rel, "..") {
		name = rel
	}
	text, err := os.ReadFile(md)
	if err != nil {
		return err
	}
	blocks, err := Blocks(text)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(blocks) == 0 {
		return fmt.Errorf("%s: no go blocks", name)
	}
	dir, err := os.MkdirTemp("", "readmecheck-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	rootMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return err
	}
	goLine := "go 1.21\n" // the go.work format's first version
	if m := goVersion.FindSubmatch(rootMod); m != nil {
		goLine = "go " + string(m[1]) + "\n"
	}
	pkgDir := filepath.Join(dir, "snippets")
	files := map[string]string{filepath.Join(pkgDir, "go.mod"): "module " + snippetsModule + "\n\n" + goLine}
	if opts.Prelude != "" {
		files[filepath.Join(pkgDir, "prelude.go")] = opts.Prelude
	}
	var imported []string
	for i, b := range blocks {
		var name, src string
		var imports []string
		if b.IsFile() {
			name = filepath.Join(pkgDir, fmt.Sprintf("file%d", i+1), "main.go")
			src, imports, err = file(md, b)
		} else {
			name = filepath.Join(pkgDir, fmt.Sprintf("block%d.go", i+1))
			src, imports, err = fragment(md, i+1, b)
		}
		if err != nil {
			return errors.New(show(err.Error(), md, name, dir))
		}
		files[name] = src
		imported = append(imported, imports...)
	}
	use, err := workspace(root, imported)
	if err != nil {
		return err
	}
	files[filepath.Join(dir, "go.work")] = goLine + "\nuse (\n\t./snippets\n\t" + strings.Join(use, "\n\t") + "\n)\n"
	for name, src := range files {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(name, []byte(src), 0o644); err != nil {
			return err
		}
	}
	for _, verb := range []string{"build", "vet"} {
		cmd := exec.CommandContext(ctx, "go", verb, "./...")
		cmd.Dir = pkgDir
		cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
			return strings.HasPrefix(kv, "GOWORK=") || strings.HasPrefix(kv, "GOFLAGS=")
		}), "GOWORK="+filepath.Join(dir, "go.work"))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s of the go blocks of %s: %w\n%s", verb, name, err, show(string(out), md, name, dir))
		}
	}
	return nil
}

// show puts the Markdown file's name as the caller gave it in the go
// command's output, and the throwaway directory's as "snippets".
func show(out, abs, name, dir string) string {
	out = strings.ReplaceAll(out, abs, name)
	return strings.ReplaceAll(out, dir, "snippets")
}

// lineDirective makes what follows it in a Go file count as line `line`,
// column 1, of the Markdown file.
func lineDirective(md string, line int) string {
	return "//line " + md + ":" + strconv.Itoa(line) + ":1\n"
}

// file is a block that is a Go file of its own, and what it imports.
func file(md string, b Block) (string, []string, error) {
	src := lineDirective(md, b.Line) + b.Code
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", src, parser.ImportsOnly)
	if err != nil {
		return "", nil, err
	}
	var imports []string
	for _, spec := range f.Imports {
		path, _ := strconv.Unquote(spec.Path.Value)
		imports = append(imports, path)
	}
	return src, imports, nil
}

// fragment is a block that is a function body, wrapped as function
// block<n> of package snippets with the imports of the package names it
// uses (Imports), and those imports.
func fragment(md string, n int, b Block) (string, []string, error) {
	body := fmt.Sprintf("func block%d(ctx context.Context) error {\n%s%s", n, lineDirective(md, b.Line), b.Code)
	f, err := parser.ParseFile(token.NewFileSet(), "", "package snippets\n\n"+body+"}\n", 0)
	if err != nil {
		return "", nil, err
	}
	used := map[string]bool{"context": true}
	for _, id := range f.Unresolved { // names declared neither in the block nor by Go
		if _, ok := Imports[id.Name]; ok {
			used[id.Name] = true
		}
	}
	fn := f.Decls[0].(*ast.FuncDecl)
	if k := len(fn.Body.List); k == 0 || !isReturn(fn.Body.List[k-1]) {
		body += "\treturn nil\n"
	}
	names := slices.Sorted(maps.Keys(used))
	var src strings.Builder
	src.WriteString("package snippets\n\nimport (\n")
	var imports []string
	for _, name := range names {
		fmt.Fprintf(&src, "\t%q\n", Imports[name])
		imports = append(imports, Imports[name])
	}
	src.WriteString(")\n\n" + body + "}\n")
	return src.String(), imports, nil
}

func isReturn(s ast.Stmt) bool {
	_, ok := s.(*ast.ReturnStmt)
	return ok
}

var (
	modulePath = regexp.MustCompile(`(?m)^module\s+(\S+)`)
	goVersion  = regexp.MustCompile(`(?m)^go\s+(\S+)`)
)

// workspace lists the modules the go.work uses: the one at root, and each
// module nested below it that provides one of imports.
func workspace(root string, imports []string) ([]string, error) {
	modules := map[string]string{} // path → directory
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root && (d.Name() == "testdata" || d.Name() == "vendor" || strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_")) {
			return filepath.SkipDir
		}
		if d.IsDir() || d.Name() != "go.mod" {
			return nil
		}
		text, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if m := modulePath.FindSubmatch(text); m != nil {
			modules[string(m[1])] = filepath.Dir(p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	use := map[string]bool{root: true}
	for _, imp := range imports {
		best := ""
		for path := range modules {
			if (imp == path || strings.HasPrefix(imp, path+"/")) && len(path) > len(best) {
				best = path
			}
		}
		if best != "" {
			use[modules[best]] = true
		}
	}
	return slices.Sorted(maps.Keys(use)), nil
}
