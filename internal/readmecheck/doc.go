// Package readmecheck compiles the Go blocks of a Markdown file, so that
// the README's code cannot drift from the API unnoticed: its test checks
// README.md, and `make test` runs it.
//
// Each ```go block is compiled and vetted in a throwaway module outside the
// tree, joined to tiercache's modules by a go.work (so a block may import a
// nested module such as tiered/tieredotel). A block that starts with a
// package clause is a file of its own package. Any other block is a
// fragment: the body of a func(ctx context.Context) error, beside a prelude
// the caller writes that declares the names the fragments assume (a User
// type, a database, the values earlier blocks made); its imports are
// inferred from the package names it uses. //line directives make every
// error name the Markdown file and line.
//
// It may import nothing of tiercache: it runs the go command.
package readmecheck
