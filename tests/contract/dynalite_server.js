// Serves dynalite (in memory) on a free loopback port and prints the port on one line.
// The pytest fixture reads that line; the server exits when its stdin closes, so it never
// outlives the test run, even when pytest is killed.
'use strict'
const dynalite = require('dynalite')

const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 })
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`)
})
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
