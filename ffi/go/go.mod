module ucgm.example/consumer

go 1.19
