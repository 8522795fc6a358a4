/*
 * mpi-hello: each rank reports where it runs. Compiled into the hpc image as
 * /usr/local/bin/mpi-hello, it proves at build time that the MPI toolchain
 * works and, on a booted cluster, that the nodes can run a job together:
 *
 *     mpirun -np 4 --host node1:2,node2:2 /usr/local/bin/mpi-hello
 */
#include <mpi.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	int rank, size, len;
	char host[MPI_MAX_PROCESSOR_NAME];

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	MPI_Get_processor_name(host, &len);
	printf("rank %d of %d on %s\n", rank, size, host);
	MPI_Finalize();
	return 0;
}
