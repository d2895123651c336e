console.log("native build: placeholder until native/ lands")
