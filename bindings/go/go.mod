module github.com/gemma4/gemma4/bindings/go

go 1.19
